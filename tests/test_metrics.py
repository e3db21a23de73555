"""Ranking metrics: hand-made cases with known answers, and Model Spider's published figures."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from ml_core.ground_truth import load_performance_table
from ml_core.metrics import (
    kendall_tau_b,
    mean_report,
    ndcg,
    ranking_report,
    ranks_from_scores,
    spearman,
    top1_regret,
    topk_recall,
    weighted_tau,
)
from tests.reference_tables import reference_dir

TRUE = np.array([0.70, 0.90, 0.80, 0.60, 0.75])
PERFECT = TRUE * 3 + 1  # any increasing transform of the truth is a perfect prediction


@pytest.mark.parametrize("metric", [kendall_tau_b, spearman])
def test_correlations_perfect_and_reversed(metric):
    assert metric(TRUE, PERFECT) == pytest.approx(1.0)
    assert metric(TRUE, -PERFECT) == pytest.approx(-1.0)


@pytest.mark.parametrize("convention", ["truth", "scipy"])
def test_weighted_tau_perfect_and_reversed(convention):
    assert weighted_tau(TRUE, PERFECT, convention) == pytest.approx(1.0)
    assert weighted_tau(TRUE, -PERFECT, convention) == pytest.approx(-1.0)


def test_weighted_tau_conventions_match_scipy_calls():
    import scipy.stats

    rng = np.random.default_rng(0)
    true, pred = rng.random(12), rng.random(12)
    assert weighted_tau(true, pred, "truth") == scipy.stats.weightedtau(true, pred, rank=None).statistic
    assert weighted_tau(true, pred, "scipy") == scipy.stats.weightedtau(pred, true).statistic
    assert weighted_tau(true, pred, "truth") != weighted_tau(true, pred, "scipy")
    with pytest.raises(ValueError, match="convention"):
        weighted_tau(true, pred, "ranks")  # type: ignore[arg-type]


def test_weighted_tau_truth_weights_the_best_models_most():
    true = np.arange(10, 0, -1, dtype=float)  # model 0 best
    swap_top = true.copy()
    swap_top[[0, 1]] = swap_top[[1, 0]]
    swap_bottom = true.copy()
    swap_bottom[[8, 9]] = swap_bottom[[9, 8]]
    assert kendall_tau_b(true, swap_top) == pytest.approx(kendall_tau_b(true, swap_bottom))
    assert weighted_tau(true, swap_top) < weighted_tau(true, swap_bottom) < 1.0


def test_metrics_take_scores_not_argsort_orders_or_ranks():
    true = np.array([0.80, 0.95, 0.70, 0.85])
    pred = np.array([0.2, 0.9, 0.1, 0.5])  # the same order as true: a perfect prediction
    assert weighted_tau(true, pred) == pytest.approx(1.0)
    # argsort(pred) = [2, 0, 3, 1] read as scores ranks model 2 first: nearly reversed.
    assert weighted_tau(true, np.argsort(pred)) < 0.0
    # ranks with 0 = best are reversed scores: fed in, the perfect prediction scores -1.
    assert weighted_tau(true, ranks_from_scores(pred)) == pytest.approx(-1.0)
    assert top1_regret(true, pred) == 0.0
    assert top1_regret(true, np.argsort(pred)) == pytest.approx(0.25)


def test_ranks_from_scores():
    ranks = ranks_from_scores([0.2, 0.9, 0.9, 0.1])
    assert ranks.tolist() == [2, 0, 0, 3]
    assert np.issubdtype(ranks.dtype, np.integer)
    with pytest.raises(ValueError, match="NaN"):
        ranks_from_scores([0.1, np.nan])


def test_top1_regret_by_hand():
    true = np.array([0.80, 0.90, 0.85])
    assert top1_regret(true, [0.1, 0.9, 0.2]) == 0.0  # best predicted first
    assert top1_regret(true, [0.3, 0.1, 0.2]) == pytest.approx(0.10)  # picks the 0.80 model
    assert top1_regret(true, [0.5, 0.1, 0.5]) == pytest.approx(0.90 - (0.80 + 0.85) / 2)  # tie: mean


def test_topk_recall_by_hand():
    true = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert topk_recall(true, [1, 5, 4, 3, 2], k=2) == pytest.approx(0.5)  # {0,1} vs {1,2}
    assert topk_recall(true, true, k=3) == 1.0
    assert topk_recall(true, -true, k=2) == 0.0
    assert topk_recall(true, [1, 5, 4, 3, 2], k=10) == 1.0  # k capped at n
    # pred tie at the k-th place: models 1 and 2 share one slot (0.5 each); relevant = {0, 1}.
    assert topk_recall([4.0, 3.0, 1.0, 2.0], [3.0, 2.0, 2.0, 1.0], k=2) == pytest.approx(0.75)
    # true tie at the k-th place: either tied model counts as a true top-k model.
    assert topk_recall([3.0, 2.0, 2.0, 1.0], [3.0, 1.0, 2.0, 0.0], k=2) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        topk_recall(true, true, k=0)


def test_ndcg_by_hand():
    true = np.array([1.0, 0.0, 0.5])
    assert ndcg(true, true) == pytest.approx(1.0)
    dcg = 0.0 / math.log2(2) + 0.5 / math.log2(3) + 1.0 / math.log2(4)  # order m1, m2, m0
    ideal = 1.0 / math.log2(2) + 0.5 / math.log2(3)
    assert ndcg(true, [0.0, 2.0, 1.0]) == pytest.approx(dcg / ideal)
    # min-max gains: shifting and scaling the truth changes nothing
    assert ndcg(true * 30 + 60, [0.0, 2.0, 1.0]) == pytest.approx(dcg / ideal)
    assert ndcg(true, [0.0, 2.0, 1.0], k=1) == 0.0  # the predicted first model is the worst


def test_ndcg_ties_equal_mean_over_tie_breaks():
    true = np.array([0.9, 0.6, 0.7, 0.8])
    pred = np.array([1.0, 1.0, 0.0, 1.0])  # three models tied first

    def plain_ndcg(order):
        gains = (true - true.min()) / (true.max() - true.min())
        disc = 1 / np.log2(np.arange(len(order)) + 2)
        return (gains[list(order)] * disc).sum() / (np.sort(gains)[::-1] * disc).sum()

    orders = [(*perm, 2) for perm in itertools.permutations([0, 1, 3])]
    assert ndcg(true, pred) == pytest.approx(np.mean([plain_ndcg(o) for o in orders]))
    assert ndcg(true, np.zeros(4)) < 1.0
    assert ndcg(np.ones(4), np.arange(4.0)) == 1.0  # constant truth: every order is ideal


def test_nan_truth_dropped_nan_pred_rejected_too_few_models():
    true = np.array([0.7, np.nan, 0.9, 0.8])
    pred = np.array([0.1, 5.0, 0.3, 0.2])
    keep = ~np.isnan(true)
    assert weighted_tau(true, pred) == weighted_tau(true[keep], pred[keep]) == pytest.approx(1.0)
    assert top1_regret(true, pred) == 0.0  # model 1 has the top prediction but no ground truth
    with pytest.raises(ValueError, match="NaN"):
        spearman([0.1, 0.2, 0.3], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="at least 2"):
        kendall_tau_b([0.5, np.nan], [0.1, 0.2])
    with pytest.raises(ValueError, match="aligned"):
        ndcg([0.1, 0.2, 0.3], [0.1, 0.2])


def test_constant_input_gives_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for metric in (weighted_tau, kendall_tau_b, spearman):
            assert math.isnan(metric([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]))
            assert math.isnan(metric([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]))


def test_ranking_report_and_mean_report():
    report = ranking_report(TRUE, PERFECT, k=2)
    assert set(report) == {
        "weighted_tau_truth", "weighted_tau_scipy", "kendall_tau_b", "spearman", "top1_regret", "top2_recall",
        "ndcg",
    }
    assert report["top1_regret"] == 0.0 and report["top2_recall"] == 1.0 and report["ndcg"] == pytest.approx(1.0)

    summary = mean_report([{"a": 1.0, "b": 0.0}, {"a": 3.0, "b": float("nan")}])
    assert summary == {"a_mean": 2.0, "a_std": 1.0, "b_mean": 0.0, "b_std": 0.0}
    with pytest.raises(ValueError, match="keys"):
        mean_report([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError):
        mean_report([])


# Model Spider (NeurIPS 2023) and the scipy-default figures quoted in shared/reference/README.md.
PUBLISHED = {
    "truth": {"LogME": 0.678, "NCE": 0.666, "H-Score": 0.648, "LEEP": 0.405, "OTCE": 0.149},
    "scipy": {"LogME": 0.675, "H-Score": 0.657, "NCE": 0.655, "LEEP": 0.429},
}
ROUNDING = 0.0005 + 1e-9  # the figures are given to 3 decimals


@pytest.fixture(scope="module")
def spider_pairs() -> pd.DataFrame:
    folder = reference_dir()
    accuracy = load_performance_table(folder / "model_spider_finetune_accuracy.csv").frame
    scores = pd.read_csv(folder / "model_spider_baseline_scores.csv")
    merged = accuracy.merge(scores, left_on=["dataset", "model"], right_on=["Dataset", "Model"], validate="1:1")
    assert len(merged) == 80 and merged["dataset"].nunique() == 8
    return merged


@pytest.mark.parametrize(
    ("convention", "method", "figure"),
    [(c, m, f) for c, figures in PUBLISHED.items() for m, f in figures.items()],
)
def test_published_weighted_tau_figures(spider_pairs, convention, method, figure):
    per_dataset = [
        weighted_tau(group["accuracy"], group[method], convention) for _, group in spider_pairs.groupby("dataset")
    ]
    assert len(per_dataset) == 8
    assert abs(np.mean(per_dataset) - figure) <= ROUNDING
