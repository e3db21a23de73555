"""Ranking metrics for model recommendation, computed on SCORES (higher = better).

Every function takes 1-D array-likes of equal length ``n_models``, aligned by model:

- ``true``: ground truth (fine-tune accuracy or any score), higher = better;
- ``pred``: the predicted score, higher = better.

Never pass argsort orders or ranks where 0 = best: they reverse or scramble the order and the
metrics silently measure something else. Use :func:`ranks_from_scores` only for display.

Entries where ``true`` is NaN are dropped (models without ground truth). NaN in ``pred`` is an
error. Fewer than two remaining models raises :class:`ValueError`. Ties in ``pred`` are resolved by
expectation over a random tie-break (never by position), so results do not depend on model order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.stats

logger = logging.getLogger(__name__)

ArrayLike = npt.ArrayLike
WeightedTauConvention = Literal["truth", "scipy"]


def _as_scores(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per model); got shape {array.shape}")
    return array


def _valid_pairs(true: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(true, pred)`` as float arrays with the models lacking ground truth dropped."""
    t = _as_scores(true, "true")
    p = _as_scores(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"true and pred must be aligned by model; got {t.shape[0]} and {p.shape[0]} values")
    if np.isnan(p).any():
        raise ValueError(f"pred has NaN at model positions {np.flatnonzero(np.isnan(p)).tolist()}")
    keep = ~np.isnan(t)
    t, p = t[keep], p[keep]
    if t.shape[0] < 2:
        raise ValueError(f"need at least 2 models with ground truth to rank; got {t.shape[0]}")
    return t, p


def _is_constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


def weighted_tau(true: ArrayLike, pred: ArrayLike, convention: WeightedTauConvention = "truth") -> float:
    """Weighted Kendall tau between ground truth and predicted scores, in [-1, 1].

    ``convention="truth"`` (default): ``scipy.stats.weightedtau(true, pred, rank=None)``. Pairs are
    weighted hyperbolically by the position in the TRUE order, so mistakes among the truly best
    models cost most. This is the figure Model Spider (NeurIPS 2023) reports.

    ``convention="scipy"``: scipy's default ``scipy.stats.weightedtau(pred, true)`` (``rank=True``),
    which averages the weightings by the predicted and by the true order. This is the figure the
    LogME and SFDA papers report. The two differ by a few thousandths on typical benchmarks; always
    say which one a number uses. Returns NaN if either input is constant.
    """
    t, p = _valid_pairs(true, pred)
    if _is_constant(t) or _is_constant(p):
        return float("nan")
    if convention == "truth":
        result = scipy.stats.weightedtau(t, p, rank=None)
    elif convention == "scipy":
        result = scipy.stats.weightedtau(p, t)
    else:
        raise ValueError(f"convention must be 'truth' or 'scipy'; got {convention!r}")
    return float(result.statistic)


def kendall_tau_b(true: ArrayLike, pred: ArrayLike) -> float:
    """Kendall's tau-b (tie-corrected) in [-1, 1]; NaN if either input is constant."""
    t, p = _valid_pairs(true, pred)
    if _is_constant(t) or _is_constant(p):
        return float("nan")
    return float(scipy.stats.kendalltau(t, p, variant="b").statistic)


def spearman(true: ArrayLike, pred: ArrayLike) -> float:
    """Spearman's rank correlation in [-1, 1]; NaN if either input is constant."""
    t, p = _valid_pairs(true, pred)
    if _is_constant(t) or _is_constant(p):
        return float("nan")
    return float(scipy.stats.spearmanr(t, p).statistic)


def _top_weights(pred: np.ndarray, k: int) -> np.ndarray:
    """Probability that each model is in the predicted top-``k`` under a random tie-break.

    Models strictly above the k-th highest prediction get 1; the models tied with it share the
    remaining slots equally; the rest get 0. The weights sum to ``k``.
    """
    threshold = np.sort(pred)[::-1][k - 1]
    above = pred > threshold
    tied = pred == threshold
    weights = above.astype(np.float64)
    weights[tied] = (k - above.sum()) / tied.sum()
    return weights


def top1_regret(true_accuracy: ArrayLike, pred: ArrayLike) -> float:
    """Best true accuracy minus the true accuracy of the model predicted best (>= 0).

    In the units of ``true_accuracy`` (a fraction in, a fraction out). If several models share the
    highest prediction, their mean true accuracy is used (the expected regret of picking one of
    them at random). 0 means the recommender's first pick is (one of) the best models.
    """
    t, p = _valid_pairs(true_accuracy, pred)
    picked = t[p == p.max()].mean()
    return float(t.max() - picked)


def topk_recall(true: ArrayLike, pred: ArrayLike, k: int = 3) -> float:
    """``|true top-k ∩ predicted top-k| / k`` in [0, 1]; ``k`` is capped at the number of models.

    Ties: a model tied in ``true`` with the k-th best counts as a true top-k model (picking either
    of two equally good models is not penalised); models tied in ``pred`` at the k-th place share
    the remaining predicted slots equally (expected value over a random tie-break).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    t, p = _valid_pairs(true, pred)
    k = min(k, t.shape[0])
    relevant = t >= np.sort(t)[::-1][k - 1]
    return float((_top_weights(p, k) * relevant).sum() / k)


def _discounts(n: int, k: int) -> np.ndarray:
    positions = np.arange(n)
    return np.where(positions < k, 1.0 / np.log2(positions + 2.0), 0.0)


def ndcg(true: ArrayLike, pred: ArrayLike, k: int | None = None) -> float:
    """Normalised discounted cumulative gain of the predicted order, in [0, 1].

    Gains are the true values min-max normalised within this set of models (the best model has
    gain 1, the worst 0; all gains are 1 if ``true`` is constant), used linearly with the
    discount ``1 / log2(position + 2)`` over the first ``k`` positions (all models if ``k`` is
    None; ``k`` is capped at the number of models). Tied predictions share the average discount
    of the positions they occupy (McSherry & Najork 2008), i.e. the expected DCG over a random
    tie-break.
    """
    t, p = _valid_pairs(true, pred)
    n = t.shape[0]
    k = n if k is None else min(k, n)
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    span = t.max() - t.min()
    gains = np.ones(n) if span == 0 else (t - t.min()) / span
    discounts = _discounts(n, k)

    order = np.argsort(-p, kind="stable")
    sorted_pred = p[order]
    dcg = 0.0
    start = 0
    while start < n:  # one tie group of equal predictions at a time
        stop = start + 1
        while stop < n and sorted_pred[stop] == sorted_pred[start]:
            stop += 1
        dcg += gains[order[start:stop]].sum() * discounts[start:stop].mean()
        start = stop
    ideal = (np.sort(gains)[::-1] * discounts).sum()
    return float(dcg / ideal)


def ranks_from_scores(scores: ArrayLike) -> np.ndarray:
    """Integer ranks, shape ``(n,)``: 0 = best (highest score); ties share the lowest rank.

    ``[0.2, 0.9, 0.9, 0.1] -> [2, 0, 0, 3]``. NaN scores are an error.
    """
    s = _as_scores(scores, "scores")
    if np.isnan(s).any():
        raise ValueError(f"scores have NaN at positions {np.flatnonzero(np.isnan(s)).tolist()}")
    return (scipy.stats.rankdata(-s, method="min") - 1).astype(np.int64)


def ranking_report(true_accuracy: ArrayLike, pred: ArrayLike, k: int = 3) -> dict[str, float]:
    """All metrics for one dataset: ``weighted_tau_truth``, ``weighted_tau_scipy``,
    ``kendall_tau_b``, ``spearman``, ``top1_regret`` (accuracy units), ``top{k}_recall``, ``ndcg``.
    """
    return {
        "weighted_tau_truth": weighted_tau(true_accuracy, pred, "truth"),
        "weighted_tau_scipy": weighted_tau(true_accuracy, pred, "scipy"),
        "kendall_tau_b": kendall_tau_b(true_accuracy, pred),
        "spearman": spearman(true_accuracy, pred),
        "top1_regret": top1_regret(true_accuracy, pred),
        f"top{k}_recall": topk_recall(true_accuracy, pred, k),
        "ndcg": ndcg(true_accuracy, pred),
    }


def mean_report(reports: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean and standard deviation (``ddof=0``) of each metric over datasets.

    Keys ``<metric>_mean`` and ``<metric>_std``. NaN entries (a metric undefined on a dataset, e.g.
    a constant prediction) are left out of that metric's mean; all-NaN gives NaN. Every report must
    have the same keys.
    """
    if not reports:
        raise ValueError("mean_report needs at least one report")
    keys = list(reports[0])
    for index, report in enumerate(reports):
        if set(report) != set(keys):
            raise ValueError(f"report {index} has keys {sorted(report)}; expected {sorted(keys)}")
    summary: dict[str, float] = {}
    for key in keys:
        values = np.array([report[key] for report in reports], dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            summary[f"{key}_mean"] = summary[f"{key}_std"] = float("nan")
            continue
        summary[f"{key}_mean"] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    return summary
