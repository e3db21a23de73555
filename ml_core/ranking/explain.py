"""Why a ranking: what the ranker's inputs said about each model for one dataset.

The product's ranker weighs the baselines' opinions (:mod:`ml_core.ranking.features`); this module
reports them in the units a user can judge, computed by the same functions the features use:

* the nearest training datasets: the ranker's reference datasets most similar to this one, by the
  cosine of the dataset descriptors (:func:`~ml_core.ranking.baselines.nearest_dataset_scores`'s
  similarity; the ``k`` the ranker was trained with), with their similarity;
* ``nearest_score``: each model's results on those datasets, min-max normalised per dataset and
  weighted by the softmax of the similarity (the nearest-dataset feature before z-scoring; NaN for a
  model with no result on any of them);
* ``source_similarity``: the cosine of the dataset to the sample of the model's pre-training images
  (NaN: the model's card names no sample);
* the prior (each model's mean normalised result on the training datasets) is the table's
  ``prior_score`` column (:func:`~ml_core.ranking.recommend.recommend`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ml_core.ranking.baselines import source_similarity
from ml_core.ranking.baselines.nearest import neighbour_scores
from ml_core.ranking.features import BaselineReference


@dataclass(frozen=True)
class RankingExplanation:
    """``nearest``: the nearest training datasets, most similar first, as ``(name, cosine similarity)``;
    ``nearest_score (N,)`` and ``source_similarity (N,)``: see the module's doc (NaN: nothing to say)."""

    nearest: list[tuple[str, float]]
    nearest_score: np.ndarray
    source_similarity: np.ndarray

    def nearest_text(self, digits: int = 3) -> str:
        """``"name (0.973), other (0.912)"``; empty when the ranker keeps no reference datasets."""
        return ", ".join(f"{name} ({sim:.{digits}f})" for name, sim in self.nearest)


def nearest_datasets(reference: BaselineReference, descriptor: np.ndarray) -> list[tuple[str, float]]:
    """The reference's ``k`` datasets with the highest cosine similarity to ``descriptor`` (unit length,
    as :func:`ml_core.images.dataset_descriptor` gives), most similar first (ties: reference order)."""
    sims = np.asarray(reference.descriptors, dtype=np.float64) @ np.asarray(descriptor, dtype=np.float64)
    order = np.argsort(-sims, kind="stable")[: max(1, min(reference.k, len(sims)))]
    return [(reference.dataset_names[i], float(sims[i])) for i in order]


def explain_ranking(
    reference: BaselineReference | None,
    descriptor: np.ndarray,
    model_names: Sequence[str],
    model_sources: np.ndarray | None = None,
) -> RankingExplanation:
    """What drove each model's score for a dataset with this ``descriptor`` (see the module's doc).

    ``reference``: the ranker's training datasets (None: a ranker without baseline inputs, then only the
    source similarity is known); ``model_sources (N, D)``: the models' source descriptors (NaN rows: none)."""
    n = len(model_names)
    sources = np.full(n, np.nan) if model_sources is None else source_similarity(descriptor, model_sources)
    if reference is None or not reference.dataset_names:
        return RankingExplanation([], np.full(n, np.nan), sources)
    nearest = nearest_datasets(reference, descriptor)
    sims = np.asarray(reference.descriptors, dtype=np.float64) @ np.asarray(descriptor, dtype=np.float64)
    accuracy = np.asarray(reference.accuracy, dtype=np.float64)  # (T, reference models), as the feature reads it
    scores = neighbour_scores(sims, accuracy, k=reference.k, temperature=reference.temperature)
    rows = [reference.dataset_names.index(name) for name, _ in nearest]
    has_result = ~np.all(np.isnan(accuracy[rows]), axis=0)  # else neighbour_scores filled in the others' mean
    index = {m: j for j, m in enumerate(reference.model_names)}
    nearest_score = np.array([scores[index[m]] if m in index and has_result[index[m]] else np.nan for m in model_names],
                             dtype=np.float64)
    return RankingExplanation(nearest, nearest_score, sources)
