"""The rankers that need no learning, reported beside the learned one on the same held-out data.

Zero forward passes: :func:`random_scores` (the floor), :func:`data_free_prior` (each model's mean
normalised result on past datasets), :func:`attribute_prior` (one number per model: its size, or its
accuracy on its own pre-training task), :func:`nearest_dataset_scores` (the results of the most similar
past datasets), :func:`source_similarity_scores` (how much the dataset looks like each model's
pre-training sample, Cui et al. 2018) and :func:`nearest_by_profile` (nearest datasets compared by
their source profiles). One forward pass of every model on the target: :func:`logme` and
:func:`h_score` (from :mod:`ml_core.ground_truth.transferability`, where the features are scored).
"""

from ml_core.ground_truth.transferability import h_score, logme
from ml_core.ranking.baselines.nearest import nearest_dataset_scores, neighbour_scores
from ml_core.ranking.baselines.prior import attribute_prior, data_free_prior, minmax_rows, random_scores
from ml_core.ranking.baselines.source import (
    PROFILE_K,
    PROFILE_TEMPERATURE,
    distinct_sources,
    nearest_by_profile,
    source_descriptor_matrix,
    source_profiles,
    source_similarity,
    source_similarity_scores,
    stack_source_descriptors,
)

__all__ = [
    "PROFILE_K",
    "PROFILE_TEMPERATURE",
    "attribute_prior",
    "data_free_prior",
    "distinct_sources",
    "h_score",
    "logme",
    "minmax_rows",
    "nearest_by_profile",
    "nearest_dataset_scores",
    "neighbour_scores",
    "random_scores",
    "source_descriptor_matrix",
    "source_profiles",
    "source_similarity",
    "source_similarity_scores",
    "stack_source_descriptors",
]
