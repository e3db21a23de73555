"""Source similarity: how much a target dataset looks like each model's pre-training data.

A model transfers best to data like what it was trained on (Cui et al., CVPR 2018, "domain
similarity"). When a model's card points at a sample of its pre-training images, that sample is
encoded once (the same image encoder as the dataset tokens) and described like a dataset: the unit
mean feature (:func:`ml_core.images.dataset_descriptor`). A target's similarity to a
model is then the cosine between the two descriptors. It costs no forward pass of any zoo model
per target and needs no past results, so it also orders models that were never evaluated.
Models without a sample get NaN here; callers give them a neutral value.

The same similarities describe a *dataset* in the zoo's own terms: its source profile, how much
it looks like each distinct pre-training sample (:func:`source_profiles`). Nearest-dataset on
profiles (:func:`nearest_by_profile`) compares datasets by which sources they resemble instead of
by their raw mean features, which a nuisance shared by unrelated datasets can dominate.
"""

from __future__ import annotations

import numpy as np

from ml_core.ranking.baselines.nearest import nearest_dataset_scores

PROFILE_K = 5  # nearest-dataset by source profile: chosen on the validation folds (k 3/5, temperature 0.05/0.2/1)
PROFILE_TEMPERATURE = 0.2


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


def source_descriptor_matrix(descriptors: list[np.ndarray | None]) -> np.ndarray | None:
    """:func:`stack_source_descriptors` of every model's descriptor (None: no sample), or None when no
    model has a sample at all."""
    known = [d for d in descriptors if d is not None]
    return stack_source_descriptors(descriptors, len(known[0])) if known else None


def source_similarity(target: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Cosine similarity ``(N,)`` of a target descriptor ``(D,)`` to each model's source ``(N, D)``.

    Rows of NaN (no source sample) give NaN. Both sides are re-normalised, so any positive scale works.
    """
    target = np.asarray(target, dtype=np.float64)
    sources = np.asarray(sources, dtype=np.float64)
    if sources.ndim != 2 or sources.shape[1] != target.shape[0]:
        raise ValueError(f"sources {sources.shape} do not match a target descriptor of {target.shape[0]} values")
    t_norm = np.linalg.norm(target)
    norms = np.sqrt(np.einsum("ij,ij->i", sources, sources))  # row norms without an (N, D) temporary
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


def distinct_sources(sources: np.ndarray) -> np.ndarray:
    """``(S, D)``: the distinct source-sample descriptors among ``sources (N, D)`` (NaN rows dropped;
    models pre-trained on the same sample share one row), in a stable (sorted) order."""
    sources = np.asarray(sources, dtype=np.float64)
    known = sources[~np.isnan(sources).any(axis=1)] if sources.ndim == 2 else np.zeros((0, 0))
    if not len(known):
        return np.zeros((0, sources.shape[1] if sources.ndim == 2 else 0))
    return np.unique(np.round(known, 10), axis=0)


def source_profiles(descriptors: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """Each dataset's *source profile* ``(T, S)``: its cosine similarity to each distinct source
    sample ``(S, D)``, z-scored across the sources and scaled to unit length.

    Two datasets with close profiles look like the same pre-training sources (and unlike the same
    others), so they tend to favour the same models: a dataset description in the zoo's own terms,
    for nearest-dataset (:func:`ml_core.ranking.baselines.nearest.nearest_dataset_scores` on profiles).
    With fewer than two sources there is no profile: zeros ``(T, S)``.
    """
    descriptors = np.atleast_2d(np.asarray(descriptors, dtype=np.float64))
    out = np.zeros((len(descriptors), len(distinct)))
    if len(distinct) < 2:
        return out
    for i, d in enumerate(descriptors):
        sims = source_similarity(d, distinct)
        std = sims.std()
        if std > 1e-12:
            z = (sims - sims.mean()) / std
            out[i] = z / np.linalg.norm(z)
    return out


def nearest_by_profile(
    descriptor: np.ndarray,
    reference_descriptors: np.ndarray,
    reference_accuracy: np.ndarray,
    model_sources: np.ndarray | None,
    *,
    k: int = PROFILE_K,
    temperature: float = PROFILE_TEMPERATURE,
) -> np.ndarray | None:
    """Nearest-dataset scores ``(N,)`` for a target descriptor ``(D,)`` from reference datasets
    ``(T, D)`` and their accuracies ``(T, N)``, with datasets compared by source profile (the
    distinct samples among ``model_sources (N', D)``); ``None`` with fewer than two distinct samples."""
    distinct = distinct_sources(model_sources) if model_sources is not None else np.zeros((0, 0))
    if len(distinct) < 2:
        return None
    profiles = source_profiles(reference_descriptors, distinct)
    target = source_profiles(descriptor, distinct)[0]
    scores, _ = nearest_dataset_scores(target, profiles, reference_accuracy, k=k, temperature=temperature)
    return scores
