"""Nearest-dataset baseline: a new dataset's ranking from the most similar training datasets.

A dataset is described by the mean of its image-encoder features over all valid images
(:func:`ml_core.images.dataset_descriptor`, unit length). The target's ``k`` most similar training datasets (cosine
similarity) vote with the min-max normalised performance of each model, weighted by a softmax
of the similarity over ``temperature``. It needs no model forward pass: only the dataset tokens.
"""

from __future__ import annotations

import numpy as np

from ml_core.ranking.baselines.prior import minmax_rows


def nearest_dataset_scores(
    target: np.ndarray,
    train_descriptors: np.ndarray,
    train_accuracy: np.ndarray,
    *,
    k: int = 3,
    temperature: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(N,)`` for the target from training datasets ``(T, D)`` and their accuracies ``(T, N)``.

    Returns the scores (higher = better) and the similarity of every training dataset ``(T,)``.
    A model with no result on any of the neighbours gets the neighbours' mean score.
    """
    sims = train_descriptors @ target
    return neighbour_scores(sims, train_accuracy, k=k, temperature=temperature), sims


def neighbour_scores(sims: np.ndarray, train_accuracy: np.ndarray, *, k: int, temperature: float) -> np.ndarray:
    """Scores ``(N,)``: the min-max normalised accuracies ``(T, N)`` of the ``k`` training datasets with
    the highest similarity ``sims (T,)``, weighted by a softmax of the similarity over ``temperature``.
    A model with no result on any of the neighbours gets the neighbours' mean score."""
    order = np.argsort(-sims, kind="stable")[: max(1, min(k, len(sims)))]
    weights = np.exp((sims[order] - sims[order].max()) / temperature)
    norm = minmax_rows(train_accuracy[order])
    known = ~np.isnan(norm)
    weighted = np.where(known, norm, 0.0) * weights[:, None]
    mass = (known * weights[:, None]).sum(0)
    scores = np.where(mass > 0, weighted.sum(0) / np.where(mass > 0, mass, 1.0), np.nan)
    fill = np.nanmean(scores) if np.any(~np.isnan(scores)) else 0.0
    return np.where(np.isnan(scores), fill, scores)
