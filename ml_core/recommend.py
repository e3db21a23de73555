"""Rank a whole zoo for one dataset: the table a user reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_core.metrics import ranks_from_scores


def recommendation_table(
    model_names: list[str],
    scores: np.ndarray,
    *,
    prior_scores: np.ndarray | None = None,
    accuracy: np.ndarray | None = None,
    shortlist: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per model, best first: ``rank`` (0 = best), ``model``, ``score`` (higher = better).

    Optional columns: ``shortlist`` (True for the models a two-stage run should pass through LogME,
    given as their indices), ``prior_score`` (the data-free prior, for comparison), ``accuracy`` and
    ``true_rank`` when the dataset's results are known.
    """
    scores = np.asarray(scores, dtype=np.float64)
    frame = pd.DataFrame({"model": model_names, "score": scores})
    frame.insert(0, "rank", ranks_from_scores(scores))
    if shortlist is not None:
        frame["shortlist"] = np.isin(np.arange(len(scores)), np.asarray(shortlist, dtype=int))
    if prior_scores is not None:
        frame["prior_score"] = np.asarray(prior_scores, dtype=np.float64)
    if accuracy is not None:
        acc = np.asarray(accuracy, dtype=np.float64)
        frame["accuracy"] = acc
        true_rank = np.full(len(acc), -1, dtype=np.int64)
        known = ~np.isnan(acc)
        if known.any():
            true_rank[known] = ranks_from_scores(acc[known])
        frame["true_rank"] = true_rank
    return frame.sort_values(["rank", "model"], kind="stable").reset_index(drop=True)
