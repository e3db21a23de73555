"""LogME and H-score on small cases with known answers."""

import numpy as np
import pytest

from ml_core.ground_truth import evidence, h_score, logme, logme_fit


@pytest.mark.parametrize("n,d", [(200, 5), (12, 30)])
def test_logme_evidence_matches_the_direct_formula(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(float)
    value, alpha, beta = logme_fit(f, y)
    direct, _ = evidence(f, y, alpha, beta)
    assert value == pytest.approx(direct, rel=1e-8, abs=1e-8)


def test_logme_fixed_point_maximises_the_evidence():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(150, 8))
    y = f @ rng.normal(size=8) + 0.5 * rng.normal(size=150)
    value, alpha, beta = logme_fit(f, y, max_iter=200, tol=1e-10)
    for da, db in [(1.2, 1), (0.8, 1), (1, 1.2), (1, 0.8)]:
        assert evidence(f, y, alpha * da, beta * db)[0] < value


def test_logme_prefers_features_that_separate_the_classes():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 50)
    informative = np.eye(4)[labels] * 3 + rng.normal(size=(200, 4))
    noise = rng.normal(size=(200, 4))
    assert logme(informative, labels) > logme(noise, labels)
    assert h_score(informative, labels) > h_score(noise, labels)


def test_h_score_in_one_dimension_is_between_over_total_variance():
    f = np.array([[0.0], [2.0], [4.0], [10.0]])
    y = np.array([0, 0, 1, 1])
    between = np.var([1.0, 1.0, 7.0, 7.0])
    assert h_score(f, y, ridge=0.0, shrinkage=0.0) == pytest.approx(between / np.var(f[:, 0]))


def test_shrunk_h_score_stays_finite_and_informative_with_more_dims_than_images():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 10)
    signal = np.zeros((30, 200))
    signal[:, :3] = np.eye(3)[labels] * 2
    informative = signal + rng.normal(size=(30, 200))
    noise = rng.normal(size=(30, 200))
    assert np.isfinite(h_score(noise, labels))
    assert h_score(informative, labels) > h_score(noise, labels)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="two classes"):
        logme(np.zeros((4, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        h_score(np.array([[np.nan], [1.0]]), np.array([0, 1]))
