"""Source similarity: a target is compared with each model's sample of pre-training images."""

import numpy as np
import pytest

from ml_core.ranking import BaselineReference
from ml_core.ranking.baselines import (
    distinct_sources,
    nearest_by_profile,
    nearest_dataset_scores,
    source_profiles,
    source_similarity,
    source_similarity_scores,
    stack_source_descriptors,
)


def test_the_model_whose_source_looks_like_the_target_scores_highest():
    sources = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [np.nan, np.nan, np.nan], [0.6, 0.8, 0.0]])
    target = np.array([0.0, 2.0, 0.1])  # like source 1; scale does not matter
    sims = source_similarity(target, sources)
    assert np.isnan(sims[2])  # no sample: unknown, not zero
    assert sims[1] == pytest.approx(2.0 / np.sqrt(4.01))
    assert np.argmax(np.nan_to_num(sims, nan=-9)) == 1
    scores = source_similarity_scores(target, sources)
    assert scores[2] == pytest.approx(np.nanmean(sims))  # neutral: the others' mean
    assert list(np.argsort(-scores))[:2] == [1, 3]


def test_no_sample_at_all_gives_a_constant_ranking_and_shapes_are_checked():
    nobody = stack_source_descriptors([None, None], dim=3)
    assert np.isnan(nobody).all() and nobody.shape == (2, 3)
    assert source_similarity_scores(np.ones(3), nobody).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="expected"):
        stack_source_descriptors([np.ones(4)], dim=3)
    with pytest.raises(ValueError, match="do not match"):
        source_similarity(np.ones(3), np.ones((2, 4)))


def test_the_ranker_feature_follows_the_source_and_is_neutral_without_one():
    reference = BaselineReference(
        dataset_names=["x1", "y1"], model_names=["a", "b", "c"], accuracy=np.array([[0.9, 0.5, 0.1], [0.8, 0.6, 0.2]]),
        descriptors=np.eye(2, 4), families={"x1": "x", "y1": "y"}, k=1,
    )
    sources = np.array([[0.0, 0.0, 1.0, 0.0], [np.nan] * 4, [0.0, 0.0, 0.0, 1.0], [0.1, 0.0, 0.0, 1.0]])
    target = np.array([0.0, 0.0, 0.0, 1.0])
    names = ["a", "b", "c", "new"]  # "new" has no past result but a source sample
    features = reference.features(target, names, model_sources=sources)
    assert features.shape == (4, 4)
    assert features[1, 2] == 0.0  # b: no sample -> neutral
    assert features[2, 2] > features[3, 2] > features[0, 2]  # c's source is the target's kind
    assert features[3, :2].tolist() == [0.0, 0.0]  # new model: no prior, no neighbours' results
    assert reference.features(target, names)[:, 2].tolist() == [0.0] * 4  # no samples given: neutral


def test_distinct_sources_drop_missing_samples_and_merge_shared_ones():
    sources = np.array([[0.0, 1.0], [np.nan, np.nan], [1.0, 0.0], [0.0, 1.0]])
    assert distinct_sources(sources).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert distinct_sources(np.full((2, 3), np.nan)).shape == (0, 3)


def test_source_profiles_compare_datasets_by_the_sources_they_look_like():
    e = np.eye(5)
    sources = np.stack([e[0], e[1], e[2], e[1]])  # three distinct samples; models 1 and 3 share one
    r1 = 0.3 * e[0] + e[3]  # looks like source 0, with a large nuisance direction 3
    r2 = 0.3 * e[1] + e[4]  # looks like source 1
    target = 0.3 * e[1] + e[3]  # source 1 like r2, nuisance like r1
    accuracy = np.array([[0.9, 0.2, 0.5, 0.2], [0.2, 0.9, 0.5, 0.9]])  # r1 favours model 0, r2 models 1 and 3
    refs = np.stack([r1, r2]) / np.linalg.norm(np.stack([r1, r2]), axis=1, keepdims=True)
    t = target / np.linalg.norm(target)
    raw, _ = nearest_dataset_scores(t, refs, accuracy, k=1)
    assert np.argmax(raw) == 0  # raw mean features: fooled by the nuisance, follows r1
    profiles = source_profiles(refs, distinct_sources(sources))
    assert profiles.shape == (2, 3) and np.allclose(np.linalg.norm(profiles, axis=1), 1.0)
    by_profile = nearest_by_profile(t, refs, accuracy, sources, k=1)
    assert by_profile[1] == by_profile[3] > by_profile[2] > by_profile[0]  # follows r2, as its source says
    assert nearest_by_profile(t, refs, accuracy, sources[[1, 3]]) is None  # one distinct sample: no profile
    assert nearest_by_profile(t, refs, accuracy, None) is None
    assert source_profiles(refs, distinct_sources(sources[[0]])).tolist() == [[0.0], [0.0]]

