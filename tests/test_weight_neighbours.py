"""The weight-neighbours feature: a model never evaluated is placed by the results of its weight-space neighbours."""

import numpy as np
import pytest

from ml_core.ranking import FEATURE_NAMES, BaselineReference


def _reference(tokens):
    # two reference datasets; on both, model "a" is best and "c" worst; "d" has no result anywhere
    accuracy = np.array([[0.9, 0.5, 0.1, np.nan], [0.8, 0.6, 0.2, np.nan]])
    return BaselineReference(dataset_names=["x1", "y1"], model_names=["a", "b", "c", "d"], accuracy=accuracy,
                             descriptors=np.eye(2, 4), families={"x1": "x", "y1": "y"}, k=2, model_tokens=tokens,
                             neighbour_temperature=0.05)


TOKENS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.05, 0.0]])  # d looks like a


def test_a_new_model_takes_the_place_of_its_weight_space_neighbour():
    reference = _reference(TOKENS)
    column = FEATURE_NAMES.index("weight_neighbours")
    names = ["new_like_a", "new_like_c"]
    tokens = np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9]])
    features = reference.features(np.array([1.0, 0, 0, 0]), names, model_tokens=tokens)
    assert features[0, column] > features[1, column]
    assert features[:, :2].tolist() == [[0.0, 0.0], [0.0, 0.0]]  # no history of their own
    # without tokens (or a reference without them) the feature is neutral
    assert reference.features(np.array([1.0, 0, 0, 0]), names)[:, column].tolist() == [0.0, 0.0]
    assert _reference(None).features(np.array([1.0, 0, 0, 0]), names, model_tokens=tokens)[:, column].tolist() == [0.0, 0.0]


def test_a_model_is_never_its_own_neighbour_and_unevaluated_models_are_nobodys():
    reference = _reference(TOKENS)
    knn = np.array([1.0, 0.0, -1.0, 5.0])  # d's score would dominate if it counted
    usable = np.array([True, True, True, False])
    scores = reference.neighbour_scores(["a", "b", "c"], TOKENS[:3], knn, usable)
    # a's nearest usable neighbour other than itself is b or c, never a (1.0) nor d (5.0)
    assert scores[0] < 1.0 and np.all(scores < 1.0 + 1e-9)
    assert reference.neighbour_scores(["new"], TOKENS[[3]], knn, usable)[0] == pytest.approx(1.0, abs=1e-3)


def test_tokens_round_trip_and_a_width_change_is_refused():
    reference = _reference(TOKENS)
    loaded = BaselineReference.from_dict(reference.to_dict())
    np.testing.assert_array_equal(loaded.model_tokens, TOKENS)
    assert loaded.neighbour_temperature == 0.05
    with pytest.raises(ValueError, match="retrain"):
        reference.features(np.array([1.0, 0, 0, 0]), ["n"], model_tokens=np.ones((1, 5)))
