"""Rankers that need no learning, reported beside the learned one on the same held-out datasets."""

from __future__ import annotations

import numpy as np


def minmax_rows(accuracy: np.ndarray) -> np.ndarray:
    """Min-max normalise each row of ``accuracy (D, N)`` to [0, 1], NaN kept; constant rows -> 0.5."""
    acc = np.asarray(accuracy, dtype=np.float64)
    lo = np.nanmin(acc, axis=1, keepdims=True)
    hi = np.nanmax(acc, axis=1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(span > 0, (acc - lo) / np.where(span > 0, span, 1.0), 0.5)
    return np.where(np.isnan(acc), np.nan, out)


def data_free_prior(train_accuracy: np.ndarray) -> np.ndarray:
    """Each model's mean normalised performance over the training datasets.

    Args:
        train_accuracy: ``(D_train, N)`` accuracies, NaN where unknown.

    Returns ``(N,)`` scores, higher = better; a model with no training result gets the mean
    of the others (it is neither favoured nor buried).
    """
    norm = minmax_rows(train_accuracy)
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(norm), axis=0)
        prior = np.where(counts > 0, np.nansum(norm, axis=0) / np.maximum(counts, 1), np.nan)
    fill = np.nanmean(prior) if np.any(~np.isnan(prior)) else 0.0
    return np.where(np.isnan(prior), fill, prior)


def random_scores(n_models: int, seed: int) -> np.ndarray:
    """Uniform random scores ``(n_models,)``: the floor every method must clear."""
    return np.random.default_rng(seed).random(n_models)
