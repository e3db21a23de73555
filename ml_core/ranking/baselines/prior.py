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


def attribute_prior(values: np.ndarray, log: bool = False) -> np.ndarray:
    """A data-free prior from one number per model ``values (N,)`` (higher = better; NaN = unknown, which
    gets the mean of the known so that it is neither favoured nor buried); ``log`` ranks by ``log10``.

    Two of them are the field's strongest data-free baselines: model size (parameter count: bigger
    backbones transfer better, Singh et al. 2026) and each model's accuracy on its own pre-training
    task (the zoo's ImageNet top-1, from its card).
    """
    v = np.asarray(values, dtype=np.float64)
    if log:
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    fill = np.nanmean(v) if np.any(~np.isnan(v)) else 0.0
    return np.where(np.isnan(v), fill, v)


def random_scores(n_models: int, seed: int) -> np.ndarray:
    """Uniform random scores ``(n_models,)``: the floor every method must clear."""
    return np.random.default_rng(seed).random(n_models)
