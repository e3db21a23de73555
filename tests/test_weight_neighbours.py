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


def _full_softmax_scores(reference, names, tokens, scores, usable, k=None):
    """An independent computation: centred cosine / T over the usable reference models but oneself,
    softmax over all of them (``k``: over the ``k`` most similar only)."""
    ref = reference.model_tokens
    centre = ref[usable].mean(0)
    unit = lambda x: (x - centre) / np.linalg.norm(x - centre, axis=1, keepdims=True)  # noqa: E731
    out = []
    for name, sim in zip(names, unit(tokens) @ unit(ref).T / reference.neighbour_temperature, strict=True):
        allowed = usable & (np.array(reference.model_names) != name)
        candidates = np.flatnonzero(allowed)
        candidates = candidates[np.argsort(-sim[candidates])][:k]
        w = np.exp(sim[candidates] - sim[candidates].max())
        out.append(float((w / w.sum()) @ scores[candidates]))
    return np.array(out)


@pytest.mark.parametrize("n, k", [(40, 64), (300, 16)])
def test_neighbours_are_the_k_most_similar_models_and_exact_while_the_zoo_is_small(n, k):
    rng = np.random.default_rng(n)
    tokens = rng.normal(size=(n, 12))
    names = [f"m{i}" for i in range(n)]
    reference = BaselineReference(["x"], names, rng.uniform(size=(1, n)), np.eye(1, 4), {}, model_tokens=tokens,
                                  neighbour_k=k)
    scores, usable = rng.normal(size=n), rng.uniform(size=n) > 0.1
    queries = np.vstack([tokens[:20], rng.normal(size=(5, 12))])  # reference models and new ones
    query_names = names[:20] + [f"new{i}" for i in range(5)]
    got = reference.neighbour_scores(query_names, queries, scores, usable)
    np.testing.assert_allclose(got, _full_softmax_scores(reference, query_names, queries, scores, usable, k), atol=1e-9)
    if n <= k + 1:  # every reference model is a candidate: the plain softmax over all of them
        np.testing.assert_allclose(got, _full_softmax_scores(reference, query_names, queries, scores, usable), atol=1e-9)
    index, weights = reference.neighbours(query_names, queries, usable)
    assert index.shape == weights.shape == (25, min(k, n))
    assert all(weights[i][index[i] == i].sum() == 0 for i in range(20))  # never one's own neighbour
