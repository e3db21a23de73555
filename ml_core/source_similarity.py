"""Source similarity: how much a target dataset looks like each model's pre-training data.

A model transfers best to data like what it was trained on (Cui et al., CVPR 2018, "domain
similarity"). When a model's card points at a sample of its pre-training images, that sample is
encoded once (the same image encoder as the dataset tokens) and described like a dataset: the unit
mean feature (:func:`ml_core.nearest_dataset.dataset_descriptor`). A target's similarity to a
model is then the cosine between the two descriptors. It costs no forward pass of any zoo model
per target and needs no past results, so it also orders models that were never evaluated.
Models without a sample get NaN here; callers give them a neutral value.
"""

from __future__ import annotations

import numpy as np


def stack_source_descriptors(descriptors: list[np.ndarray | None], dim: int) -> np.ndarray:
    """``(N, dim)`` float64: one row per model, NaN rows where a model has no source sample."""
    out = np.full((len(descriptors), dim), np.nan)
    for i, d in enumerate(descriptors):
        if d is not None:
            d = np.asarray(d, dtype=np.float64)
            if d.shape != (dim,):
                raise ValueError(f"source descriptor {i} has shape {d.shape}, expected ({dim},)")
            out[i] = d
    return out


def source_similarity(target: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Cosine similarity ``(N,)`` of a target descriptor ``(D,)`` to each model's source ``(N, D)``.

    Rows of NaN (no source sample) give NaN. Both sides are re-normalised, so any positive scale works.
    """
    target = np.asarray(target, dtype=np.float64)
    sources = np.asarray(sources, dtype=np.float64)
    if sources.ndim != 2 or sources.shape[1] != target.shape[0]:
        raise ValueError(f"sources {sources.shape} do not match a target descriptor of {target.shape[0]} values")
    t_norm = np.linalg.norm(target)
    norms = np.linalg.norm(sources, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sims = (sources @ target) / (norms * t_norm)
    return np.where(np.isfinite(sims), sims, np.nan)


def source_similarity_scores(target: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """:func:`source_similarity` as a ranking ``(N,)`` (higher = better): models without a sample
    get the mean of the others (neither favoured nor buried); with no sample at all, all zeros."""
    sims = source_similarity(target, sources)
    known = ~np.isnan(sims)
    if not known.any():
        return np.zeros(len(sims))
    return np.where(known, sims, sims[known].mean())
