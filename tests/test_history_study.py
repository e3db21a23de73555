"""The history study: smaller histories and relatives in training, on a world with a known answer."""

import numpy as np
import pandas as pd
import pytest

from ml_core.evaluation import (
    ALL,
    EvaluationConfig,
    EvaluationData,
    doubling_slope,
    evaluate_fold,
    history_jobs,
    leave_family_out_folds,
    mean_and_standard_error,
    relatives_table,
    run_history_study,
    size_table,
)
from ml_core.images import DatasetTokens
from ml_core.ranking import RankerConfig, RankerTrainingConfig
from ml_core.trainer import TrainerConfig

# every family has its own way of ranking the models, and its own look (descriptor direction)
KIND = {"a1": 0, "a2": 0, "b1": 1, "b2": 1, "c1": 2, "d1": 3, "e1": 4}
FAMILIES = {d: d[0] for d in KIND}
METHODS = ("prior", "nearest", "oracle_nearest", "logme", "ranker:linear")


def _world(n_models: int = 8, seed: int = 0) -> EvaluationData:
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n_models) for _ in range(5)]
    names = list(KIND)
    accuracy = np.stack([0.3 + 0.05 * orders[KIND[d]] + rng.normal(scale=0.005, size=n_models) for d in names])
    tokens = {}
    for d in names:
        direction = np.eye(16)[KIND[d]] * 5.0
        features = (direction + rng.normal(scale=0.05, size=(3, 2, 16))).astype(np.float32)
        tokens[d] = DatasetTokens(features=features, valid=np.ones((3, 2), bool), class_names=["x", "y"], attrs={})
    return EvaluationData(
        model_names=[f"m{i}" for i in range(n_models)], dataset_names=names, accuracy=accuracy, families=FAMILIES,
        dataset_tokens=tokens, model_tokens=rng.normal(size=(n_models, 4)).astype(np.float32),
        logme=accuracy + rng.normal(scale=0.02, size=accuracy.shape), h_score=None,
        forward_seconds=np.full(accuracy.shape, 0.1),
    )


def _variants() -> dict[str, RankerTrainingConfig]:
    linear = RankerTrainingConfig(model=RankerConfig(architecture="linear", baseline_features=True, residual_init=True),
                                  trainer=TrainerConfig(epochs=2, scheduler="none"))
    return {"linear": linear}


@pytest.fixture(scope="module")
def study():
    data = _world()
    folds = leave_family_out_folds(data.dataset_names, data.families, val_families=1, seed=0)
    jobs = history_jobs(folds, data.families, [1, 2, 9], repeats=2, seed=0)
    return data, folds, jobs, run_history_study(data, jobs, EvaluationConfig(), _variants())


def test_jobs_cover_every_size_below_the_full_history_and_the_relatives(study):
    data, folds, jobs, _ = study
    for fold in folds:  # 5 families: 1 held out, 1 validation, 3 in training
        mine = [j for j in jobs if j.family_fold == fold.name]
        assert sorted((j.size, j.repeat) for j in mine) == [("1", 0), ("1", 1), ("2", 0), ("2", 1), (ALL, 0)]
        assert next(j.fold for j in mine if j.size == ALL) == fold
    assert sorted(j.fold.test[0] for j in jobs if j.size == "relatives") == ["a1", "a2", "b1", "b2"]


def test_a_relative_in_the_history_lets_nearest_dataset_find_the_ranking(study):
    _, _, _, rows = study
    with_family, alone = relatives_table(rows, METHODS)
    assert list(alone.index) == list(with_family.index) == ["a1", "a2", "b1", "b2"]
    # the relative ranks the models like the held-out dataset and looks like it: nearest follows it
    assert (alone["nearest"] > 0.9).all() and (alone["oracle_nearest"] > 0.9).all()
    assert (alone["nearest"] - with_family["nearest"]).mean() > 0.3
    np.testing.assert_allclose(alone["logme"], with_family["logme"])  # LogME reads no history


def test_size_table_averages_the_subsets_and_keeps_the_full_history_as_is(study):
    data, folds, _, rows = study
    table = size_table(rows, METHODS)
    assert set(table["size"]) == {"1", "2", ALL}
    for fold, part in table.groupby("family_fold"):
        n_train = part.set_index("size")["n_train"]
        assert n_train["1"] < n_train["2"] < n_train[ALL]
        full = next(f for f in folds if f.name == fold)
        direct = pd.DataFrame(evaluate_fold(data, full, EvaluationConfig(), variants=_variants()))
        direct = direct[(direct["split"] == "test") & (direct["method"] == "prior")]["weighted_tau_truth"].mean()
        assert part.set_index("size").loc[ALL, "prior"] == pytest.approx(direct)


def test_doubling_slope_recovers_a_known_slope():
    n_train = np.array([2, 4, 8, 16] * 3)
    table = pd.DataFrame({
        "family_fold": np.repeat(["f1", "f2", "f3"], 4), "n_train": n_train,
        "prior": 0.3, "ranker": 0.3 + 0.05 * np.log2(n_train) + np.repeat([0.0, 0.1, -0.1], 4),
    })
    slope, low, high = doubling_slope(table, "ranker", n_boot=200)
    assert slope == pytest.approx(0.05) and low == pytest.approx(0.05) and high == pytest.approx(0.05)
    table["ranker"] += np.tile([0.0, 0.02, -0.02, 0.0], 3) * np.repeat([1, 2, 3], 4)  # fold-dependent noise
    slope, low, high = doubling_slope(table, "ranker", n_boot=200)
    assert low < slope < high


def test_mean_and_standard_error_ignore_missing_values():
    mean, se = mean_and_standard_error(np.array([0.1, 0.3, np.nan]))
    assert mean == pytest.approx(0.2) and se == pytest.approx(np.std([0.1, 0.3], ddof=1) / np.sqrt(2))
    assert np.isnan(mean_and_standard_error(np.array([0.5]))[1])
