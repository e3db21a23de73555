"""Shortlists for the two-stage mode: which ``k`` models get a forward pass (then LogME orders them).

A shortlist is good when it *contains* the best model, not when it is well ordered: the second
stage re-orders it anyway. Two policies:

* :func:`top_k` -- the ``k`` highest scores of a first-stage ranker (or the prior);
* :func:`coverage_shortlist` -- a portfolio: optionally the first stage's top ``n_first`` models,
  then, greedily, the model that most lowers the mean top-1 regret over the history (the past
  datasets' accuracies: "had we shortlisted these, how far from the best would we have been?"),
  ties broken by the first-stage score. It spreads the slots over the models that were best
  somewhere instead of spending them on near-copies of one favourite. Models without any past
  result cannot be covered and enter only through the first stage's picks.

:func:`rerank_shortlist` turns a shortlist and the second-stage scores into one score per model;
:func:`two_stage_shortlist` is the policy the product uses (``model_recommendations``).
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest ``scores (N,)``, best first (stable for ties)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[: max(0, min(k, len(scores)))]


def history_regret(history: np.ndarray, chosen: np.ndarray) -> float:
    """Mean over past datasets of (best accuracy) - (best accuracy among ``chosen``), in accuracy units.

    ``history (T, N)`` may hold NaN (unknown); a dataset where no chosen model has a result counts
    as missing the best entirely (regret = best - worst known).
    """
    best = np.nanmax(history, axis=1)
    worst = np.nanmin(history, axis=1)
    if len(chosen) == 0:
        return float(np.mean(best - worst))
    part = history[:, chosen]
    have = ~np.all(np.isnan(part), axis=1)
    got = np.where(have, np.nanmax(np.where(np.isnan(part), -np.inf, part), axis=1), worst)
    return float(np.mean(best - got))


def coverage_shortlist(
    history: np.ndarray, k: int, first_stage: np.ndarray | None = None, n_first: int = 0
) -> np.ndarray:
    """A ``k``-model portfolio (indices, in the order chosen) from ``history (T, N)`` accuracies.

    The first ``n_first`` slots go to the top of ``first_stage (N,)``; the rest are filled greedily
    by the largest drop in :func:`history_regret`, ties broken by ``first_stage``.
    Datasets (rows) with fewer than two known results are ignored. With no usable history, or once
    nothing more can be covered, the remaining slots follow ``first_stage``.
    """
    history = np.asarray(history, dtype=np.float64)
    n = history.shape[1]
    k = max(0, min(k, n))
    first = np.zeros(n) if first_stage is None else np.asarray(first_stage, dtype=np.float64)
    chosen = list(top_k(first, min(n_first, k)))
    rows = np.sum(~np.isnan(history), axis=1) >= 2
    usable = history[rows]
    covered = ~np.all(np.isnan(usable), axis=0) if len(usable) else np.zeros(n, dtype=bool)
    tie_order = np.argsort(np.argsort(-first, kind="stable"), kind="stable")  # 0 = best first-stage score
    known = np.where(np.isnan(usable), -np.inf, usable)  # (T', N): unknown never covers a dataset
    got = np.nanmin(usable, axis=1) if len(usable) else np.zeros(0)  # best so far per dataset; none: the worst
    for j in chosen:
        got = np.maximum(got, known[:, j])
    while len(chosen) < k:
        open_ = covered.copy()
        open_[chosen] = False
        if not open_.any():
            break
        # drop in the mean history regret for each candidate at once: O(T x N) a step, fine for 1,000 models
        gains = np.where(open_, (np.maximum(known, got[:, None]) - got[:, None]).mean(axis=0), -np.inf)
        gains = np.round(gains, 12)  # equal gains are ties whatever the float rounding; the first stage decides
        best = int(max(np.flatnonzero(open_), key=lambda j: (gains[j], -tie_order[j])))
        if gains[best] <= 0 and chosen:
            break  # nothing left that the history says could be the best
        chosen.append(best)
        got = np.maximum(got, known[:, best])
    for j in top_k(first, n):  # fill any remaining slots by the first stage
        if len(chosen) >= k:
            break
        if j not in chosen:
            chosen.append(int(j))
    return np.array(chosen, dtype=int)


def rerank_shortlist(first_stage: np.ndarray, second_stage: np.ndarray, short: np.ndarray) -> np.ndarray:
    """Scores ``(N,)``: the shortlist above everyone, ordered by ``second_stage``; the others keep the
    first stage's order below it. ``second_stage`` is read only at the shortlisted indices."""
    first = np.asarray(first_stage, dtype=np.float64)
    scores = first - first.max() - 1.0
    if len(short):
        inner = np.asarray(second_stage, dtype=np.float64)[short]
        rank_in_short = np.argsort(np.argsort(-inner, kind="stable"), kind="stable")
        scores[short] = 1.0 + (len(short) - rank_in_short)
    return scores


def default_shortlist_size(n_models: int) -> int:
    """A third of the zoo (at least one model): the two-stage mode's budget of forward passes."""
    return max(1, n_models // 3)


def two_stage_shortlist(scores: np.ndarray, history: np.ndarray | None, k: int) -> np.ndarray:
    """The models a two-stage run should pass through LogME: the ranker's top ``k // 2``, then the
    coverage of the past results ``history (T, N)`` (NaN = unknown); top ``k`` without a history."""
    if history is None or not np.any(~np.isnan(history)):
        return top_k(scores, k)
    return coverage_shortlist(history, k, scores, n_first=k // 2)
