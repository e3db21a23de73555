"""Proxy labels for sampled tasks: cheap transferability scores of every zoo model on a task's images.

A sampled task (:mod:`ml_core.ranking.tasks`) has no fine-tune result; its ranking label is a proxy
computed from each zoo model's penultimate features of the task's images:

* ``probe``: a linear probe's leave-one-out accuracy
  (:func:`~ml_core.ground_truth.transferability.loo_probe_accuracy`: each image scored by the ridge classifier
  fit on all the others, in closed form; ten times cheaper than the product's 4-fold probe on a task of
  fifty images, which matters for thousands of tasks x 25 models);
* ``logme``: LogME (:func:`task_logme`: the product's :func:`~ml_core.ground_truth.transferability.logme`
  with the classes' fixed points run together);
* ``aggregate``: the mean of the two, each z-scored across the models of the task.

The features are computed once per (model, dataset) for the images behind the dataset's token slots
(:func:`token_images`, :func:`zoo_token_features`) and indexed by slot, so a task's features are a
subset: no second forward pass per task. Given a :class:`FeatureStore`, they are read from the artifact
store's features artifacts (:mod:`ml_core.ground_truth.features`), or computed once and published there:
those ``transferability_scores`` reads when they hold every token image (in the demo worlds the token
images are all of a dataset's training images, as are the scored ones), else an artifact of exactly the
token images, keyed by the token slots' selection: a different image set is never passed off as the same. :func:`proxy_agreement` measures a proxy against the fine-tune
truth of real datasets; :func:`select_proxy` picks the proxy by that agreement on the datasets it is
given (a fold's training and validation datasets, never its test ones).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml_core.artifacts import ArtifactStoreLike
from ml_core.ground_truth import (
    LabelledImages,
    TransferabilityConfig,
    ZooCell,
    cached_model_features,
    load_split,
    published_model_features,
    scoring_images,
    token_selection,
)
from ml_core.ground_truth.transferability import loo_probe_accuracy
from ml_core.images import DatasetTokens, TokenWriterConfig, scan_image_folder
from ml_core.images.folders import load_rgb_with_reason
from ml_core.images.tokens import plan_rows
from ml_core.metrics import spearman, weighted_tau
from ml_core.progress import progress
from ml_core.ranking.features import zscore_known

logger = logging.getLogger(__name__)

PROXIES = ("probe", "logme", "aggregate")
#: dataset -> model -> ``(R, C, d)`` float32 features of the image behind each token slot (0 where invalid)
SlotFeatures = Mapping[str, Mapping[str, np.ndarray]]
#: a labelled image set as token slots ``(dataset, row, column)`` and labels ``(n,)``
Slots = tuple[Sequence[tuple[str, int, int]], np.ndarray]


def token_image_set(dataset_dir: Path, tokens: DatasetTokens) -> tuple[LabelledImages, list[tuple[int, int]]]:
    """The decoded images behind ``tokens``' valid slots (labelled by their column, with their ids: paths
    relative to the dataset folder) and their ``(row, column)``, in row-major order.

    The slots are laid out again exactly as :func:`~ml_core.images.write_dataset_tokens` laid them out
    (the split, seed and row cap recorded in ``tokens.attrs``). Raises ``ValueError`` when the folder no
    longer matches the tokens (other classes, or an image that decodes where the tokens have none)."""
    config = TokenWriterConfig(**{k: v for k, v in tokens.attrs["config"].items()
                                  if k in TokenWriterConfig.__dataclass_fields__})
    index = scan_image_folder(Path(dataset_dir), tokens.attrs.get("split"))
    if list(index.classes) != list(tokens.class_names):
        raise ValueError(f"{dataset_dir}: classes {index.classes} are not the tokens' {tokens.class_names}")
    columns = plan_rows(index, config)
    images, slots, ids = [], [], []
    for row, column in zip(*np.nonzero(tokens.valid), strict=True):
        image, reason = load_rgb_with_reason(columns[column][row])
        if image is None:
            raise ValueError(f"{columns[column][row]}: a valid token slot whose image does not decode: {reason}")
        images.append(np.asarray(image, dtype=np.uint8))
        slots.append((int(row), int(column)))
        ids.append(index.relative(columns[column][row]))
    labels = np.array([c for _, c in slots], dtype=np.int64)
    return LabelledImages(images, labels, list(tokens.class_names), ids), slots


def token_images(dataset_dir: Path, tokens: DatasetTokens) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """The decoded images behind ``tokens``' valid slots and their ``(row, column)`` (:func:`token_image_set`)."""
    data, slots = token_image_set(dataset_dir, tokens)
    return data.images, slots


@dataclass(frozen=True)
class FeatureStore:
    """Where :func:`zoo_token_features` keeps the features it computes: an artifact store, the zoo's cells
    (by model key: checkpoint hash and card, the features' key), a dataset folder's content fingerprint, and
    the selection of the images ``transferability_scores`` scores (its features are shared where they hold
    every token image)."""

    store: ArtifactStoreLike
    cells: Mapping[str, ZooCell]
    fingerprint: Callable[[Path], str]
    scoring: TransferabilityConfig = TransferabilityConfig()


def _stored_token_features(features: FeatureStore, cell: ZooCell, dataset: str, dataset_dir: Path,
                           token_set: LabelledImages, tokens: DatasetTokens,
                           scored: Callable[[], LabelledImages]) -> np.ndarray:
    """One model's ``(n, d)`` features of the token images, from the store: the scored images' features when
    they hold every token image (the same images, the same forward pass: no second one), else features of
    exactly the token images, keyed as such (:func:`~ml_core.ground_truth.token_selection`)."""
    common = {"dataset": dataset, "dataset_fingerprint": features.fingerprint(dataset_dir)}
    scoring = features.scoring.selection()
    stored = published_model_features(features.store, cell, selection=scoring, **common)
    if stored is None and tokens.attrs.get("split") == features.scoring.split \
            and set(token_set.ids or ()) <= set(scored().ids or ()):
        stored, _ = cached_model_features(features.store, cell, selection=scoring, images=scored, **common)
    rows = None if stored is None else stored.rows_of(token_set.ids or [])
    if stored is not None and rows is not None:
        return stored.load(rows)
    own, _ = cached_model_features(features.store, cell, selection=token_selection(tokens.attrs),
                                   images=lambda: token_set, **common)
    return own.load()


def zoo_token_features(
    models: Mapping[str, Callable[[list[np.ndarray]], np.ndarray]],
    dataset_dirs: Mapping[str, Path],
    tokens: Mapping[str, DatasetTokens],
    store: FeatureStore | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Each model's features of each dataset's token images, once per (model, dataset): ``{dataset: {model:
    (R, C, d)}}``. ``models[name](images) -> (n, d)`` runs one model (its forward pass, penultimate layer);
    a model that raises ``ValueError`` has no features (its proxies are NaN). With ``store``, a model among
    its cells reads its features from the store's features artifacts, or computes them once and publishes
    them there (the artifacts ``transferability_scores`` reads where the images are the same)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for dataset in progress(sorted(dataset_dirs), desc="zoo features (datasets)", unit="dataset"):
        token_set, slots = token_image_set(dataset_dirs[dataset], tokens[dataset])
        rows, cols = np.array(slots).T
        shape = tokens[dataset].valid.shape
        scored = _lazy(lambda d=dataset: scoring_images(load_split(dataset_dirs[d], store.scoring.split),
                                                        store.scoring.max_images))
        out[dataset] = {}
        for name, run in models.items():
            cell = store.cells.get(name) if store is not None else None
            try:
                if cell is not None and cell.card is not None:
                    features = _stored_token_features(store, cell, dataset, dataset_dirs[dataset], token_set,
                                                      tokens[dataset], scored).astype(np.float32)
                else:
                    features = np.asarray(run(token_set.images), dtype=np.float32)
            except ValueError as err:  # TransferError included
                logger.warning("model %s has no features of %s: %s", name, dataset, err)
                continue
            grid = np.zeros((*shape, features.shape[1]), dtype=np.float32)
            grid[rows, cols] = features
            out[dataset][name] = grid
    return out


def _lazy(make: Callable[[], LabelledImages]) -> Callable[[], LabelledImages]:
    """``make()`` on the first call only."""
    kept: list[LabelledImages] = []

    def get() -> LabelledImages:
        if not kept:
            kept.append(make())
        return kept[0]

    return get


def dataset_slots(dataset: str, tokens: DatasetTokens) -> Slots:
    """A real dataset's every valid token slot, labelled by its column."""
    rows, cols = np.nonzero(tokens.valid)
    return [(dataset, int(r), int(c)) for r, c in zip(rows, cols, strict=True)], cols.astype(np.int64)


def thin_features(features: np.ndarray) -> np.ndarray:
    """``(n, r)`` features with the same Gram matrix as ``features (n, d)`` when ``n < d`` (else unchanged).

    LogME's prior is isotropic, so its evidence depends on the features only through their Gram matrix:
    ``U S`` from ``F = U S V^T`` scores exactly as ``F`` does, at the cost of an ``n x n`` eigenproblem
    instead of a ``d x d`` one (a 1280-wide model on a task of 100 images)."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    if n >= d:
        return f
    s2, u = np.linalg.eigh(f @ f.T)
    keep = s2 > 1e-10 * max(float(s2.max()), 1e-30)
    return u[:, keep] * np.sqrt(s2[keep])


def task_logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 11, tol: float = 1e-2) -> float:
    """LogME (:func:`~ml_core.ground_truth.transferability.logme`, the same fixed point and stopping rule per
    class) with every class's fixed point run at once, on :func:`thin_features`: a few times cheaper on a
    small task, equal to the product's LogME up to float rounding (a proxy label, not a stored score)."""
    f = thin_features(features)
    n, d = f.shape
    y = np.asarray(labels)
    targets = (y[:, None] == np.unique(y)[None, :]).astype(np.float64)  # (n, C)
    sigma, v = np.linalg.eigh(f.T @ f)
    sigma = np.clip(sigma, 0.0, None)[:, None]  # (d, 1)
    projected = v.T @ (f.T @ targets)  # (d, C)
    y2 = np.sum(targets**2, axis=0)
    alpha, beta = np.ones(targets.shape[1]), np.ones(targets.shape[1])
    active = np.ones(targets.shape[1], dtype=bool)

    def fit(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m_coef = projected / (sigma + alpha / beta)
        residual = np.maximum(y2 - 2 * np.sum(m_coef * projected, axis=0) + np.sum(sigma * m_coef**2, axis=0), 1e-12)
        return m_coef, np.sum(m_coef**2, axis=0), residual

    for _ in range(max_iter):
        lam = alpha / beta
        gamma = np.sum(sigma / (sigma + lam), axis=0)
        _, m2, residual = fit(alpha, beta)
        new_alpha = gamma / np.maximum(m2, 1e-12)
        new_beta = np.maximum(n - gamma, 1e-12) / residual
        alpha, beta = np.where(active, new_alpha, alpha), np.where(active, new_beta, beta)
        active &= ~(np.abs(alpha / beta - lam) / lam < tol)
        if not active.any():
            break
    _, m2, residual = fit(alpha, beta)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - beta / 2 * residual - alpha / 2 * m2
                - 0.5 * np.sum(np.log(alpha + beta * sigma), axis=0) - n / 2 * np.log(2 * np.pi))
    return float(np.mean(evidence / n))


def proxy_scores(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``probe`` (leave-one-out linear probe accuracy) and ``logme`` of one model's ``features (n, d)``."""
    return {"probe": loo_probe_accuracy(features, labels), "logme": task_logme(features, labels)}


def aggregate(tables: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(T, N)``: per row, the mean of the tables' rows each z-scored across the known models; NaN where
    every table is unknown."""
    stacked = np.stack([np.stack([np.where(np.isnan(row), np.nan, zscore_known(row)) for row in table])
                        for table in tables.values()])
    with warnings.catch_warnings():  # a row no table knows: NaN, said once here rather than warned
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stacked, axis=0)


def proxy_tables(sets: Sequence[Slots], features: SlotFeatures, models: Sequence[str],
                 *, desc: str = "proxy labels") -> dict[str, np.ndarray]:
    """Every proxy of :data:`PROXIES` for each labelled slot set (a task or a real dataset) and model:
    ``{proxy: (len(sets), len(models))}``, NaN where a model has no features of a set's images. Computed
    on one BLAS thread (the scores are then the same in every process)."""
    from threadpoolctl import threadpool_limits

    out = {p: np.full((len(sets), len(models)), np.nan) for p in ("probe", "logme")}
    with threadpool_limits(limits=1, user_api="blas"):
        for i, (slots, labels) in enumerate(progress(sets, desc=desc, unit="set")):
            names = np.array([s[0] for s in slots])
            rows = np.array([s[1] for s in slots])
            cols = np.array([s[2] for s in slots])
            groups = {d: np.flatnonzero(names == d) for d in dict.fromkeys(names.tolist())}
            for j, model in enumerate(models):
                if any(model not in features[d] for d in groups):
                    continue
                x = np.empty((len(slots), features[names[0]][model].shape[-1]), dtype=np.float64)
                for d, where in groups.items():
                    x[where] = features[d][model][rows[where], cols[where]]
                for proxy, value in proxy_scores(x, labels).items():
                    out[proxy][i, j] = value
    out["aggregate"] = aggregate({p: out[p] for p in ("probe", "logme")})
    return out


def proxy_agreement(proxy: np.ndarray, accuracy: np.ndarray) -> dict[str, np.ndarray]:
    """Per row (a real dataset): ``spearman`` and ``weighted_tau`` (truth-ordered) of ``proxy (D, N)``
    against the fine-tune ``accuracy (D, N)`` over the models known in both."""
    out = {"spearman": np.full(len(proxy), np.nan), "weighted_tau": np.full(len(proxy), np.nan)}
    for i, (p, a) in enumerate(zip(proxy, accuracy, strict=True)):
        known = ~np.isnan(p) & ~np.isnan(a)
        if known.sum() >= 2:
            out["spearman"][i] = spearman(a[known], p[known])
            out["weighted_tau"][i] = weighted_tau(a[known], p[known])
    return out


def select_proxy(tables: Mapping[str, np.ndarray], accuracy: np.ndarray, rows: Sequence[int]) -> tuple[str, dict[str, float]]:
    """The proxy whose mean weighted tau against ``accuracy`` is best over the datasets ``rows`` (a fold's
    training and validation datasets: never its test ones), with every proxy's score."""
    scores = {name: float(np.nanmean(proxy_agreement(table[list(rows)], accuracy[list(rows)])["weighted_tau"]))
              for name, table in tables.items()}
    return max(scores, key=lambda k: -np.inf if np.isnan(scores[k]) else scores[k]), scores


def describe_agreement(tables: Mapping[str, np.ndarray], accuracy: np.ndarray) -> dict[str, dict[str, Any]]:
    """Each proxy's agreement with the truth over every row: the mean Spearman and weighted tau."""
    out = {}
    for name, table in tables.items():
        agreement = proxy_agreement(table, accuracy)
        out[name] = {k: float(np.nanmean(v)) for k, v in agreement.items()}
    return out
