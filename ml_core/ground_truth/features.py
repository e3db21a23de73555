"""A zoo model's penultimate features of a dataset's images: computed once, stored as a zarr artifact, reused.

LogME, H-score and the linear probe (``transferability_scores``), the budgeted and two-stage
recommendations and the proxy labels of sampled tasks all read one model's pooled penultimate features of
a dataset's labelled images. :func:`cached_model_features` computes them once per (model, dataset content,
image selection, feature config) and publishes them in the artifact store, so that a new scorer, a changed
scoring config or another reader of the same images runs no second forward pass.

Layout of the zarr v3 group ``features.zarr`` inside the artifact (:func:`write_model_features`):

* ``features`` (n, d) float32, chunks (batch_size, d): row i holds image i's features;
* ``labels`` (n,) int64: index into ``attrs["class_names"]``;
* ``image_ids`` (n,) str: each image's path relative to the dataset folder, in row order;
* group attrs: format, model (name, key, checkpoint sha256, card fingerprint, architecture), dataset (key,
  content fingerprint), selection, config, counts, skipped images (capped list + total), the forward
  pass's seconds, the content hash.

float32, not float16: the networks compute in float32 and the scores read float64 copies of those values,
so float32 storage is exact (scores from cached features are bitwise those of a fresh forward pass); an
artifact of 1000 images x 1280 dims is 5 MB. float16 would halve that but keep 3 significant digits,
which moves LogME and H-score and can flip a probe's ties: the cached path would no longer be the fresh one.

Written one forward batch at a time (memory: one batch of preprocessed images and its features, beside the
decoded images the caller holds) and read lazily (:class:`ModelFeatures`: labels and ids at once, the
features when asked, all or some rows). Published through :func:`ml_core.artifacts.build_cached`
(staging directory, manifest last, rename or object-store claim): a killed or failed write leaves nothing
that :func:`read_model_features` accepts, and the next run builds it again.

Cache key (:func:`features_inputs` and the config): the checkpoint's sha256, the card's transfer
fingerprint (architecture, kwargs, classes, input size, pixel normalisation: what rebuilds the network and
preprocesses the images), the library architecture it is loaded into, the dataset's content fingerprint,
the image selection (:func:`scoring_selection`, :func:`token_selection`), the forward batch size and
:data:`FEATURES_CODE_VERSION`; never a scoring config, which keys the scores cached on top.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import zarr
from upath import UPath

from ml_core.artifacts import ArtifactStoreLike, as_upath, build_cached, cache_key_of, read_manifest, stable_json
from ml_core.artifacts import zarr_store
from ml_core.ground_truth.transfer import LabelledImages, load_zoo_model, to_model_input, torch_threads
from ml_core.ground_truth.transferability import model_features

if TYPE_CHECKING:
    from ml_core.ground_truth.columns import ZooCell

logger = logging.getLogger(__name__)

FEATURES_FORMAT = "modelrec.model_features/v1"
#: the store's folder of features artifacts (``<root>/model_features/<dataset>/<cache key>``); not a Dagster asset
FEATURES_ASSET = "model_features"
#: bump when the features of the same inputs would change (the forward pass, the preprocessing, the layout)
FEATURES_CODE_VERSION = "1"
FEATURES_GROUP = "features.zarr"
#: images per forward pass (and rows per zarr chunk): the batch ``model_features`` always used, so that
#: the cached features are the values a fresh pass computes
FORWARD_BATCH = 256
MAX_LISTED_SKIPPED = 100

#: one model's forward pass: decoded images -> ``(n, d)`` penultimate features
Forward = Callable[[Sequence[np.ndarray]], np.ndarray]


class FeaturesError(RuntimeError):
    """A features artifact that cannot be read (absent, unpublished, or inconsistent); names the folder."""


class FeaturesLike(Protocol):
    """What the scores read of a model's features: :class:`ModelFeatures` (stored) or :class:`FeatureTable`."""

    labels: np.ndarray
    forward_seconds: float

    @property
    def n_images(self) -> int: ...

    def load(self, rows: np.ndarray | None = None) -> np.ndarray: ...


def scoring_selection(split: str, max_images: int) -> dict[str, Any]:
    """The selection of :func:`ml_core.ground_truth.scoring_images`: at most ``max_images`` of ``split``, a
    subset drawn with seed 0, in folder order."""
    return {"kind": "scoring_images", "split": split, "max_images": int(max_images), "seed": 0}


def token_selection(tokens_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The selection of a dataset's token slots (:func:`ml_core.ranking.proxies.token_images`): the images
    behind the valid slots of tokens written with these attrs, in row-major slot order. The slots depend
    on the folder (in the dataset fingerprint), the split, the row cap and the seed only."""
    config = tokens_attrs.get("config", {})
    return {"kind": "token_slots", "split": tokens_attrs.get("split"), "max_rows": config.get("max_rows"),
            "seed": config.get("seed")}


def zoo_model_runner(cell: ZooCell) -> Forward:
    """The forward pass of ``cell``'s model (loaded once, eval mode, one torch thread): images -> ``(n, d)``
    float32 pooled penultimate features, preprocessed as its card says."""
    model = load_zoo_model(cell.path, cell.card, architecture=cell.architecture)

    def run(images: Sequence[np.ndarray]) -> np.ndarray:
        with torch_threads(1):
            return model_features(model, to_model_input(images, cell.card)).astype(np.float32)

    return run


def _forward_batches(images: Sequence[np.ndarray], forward: Forward, batch_size: int
                     ) -> Iterator[tuple[int, np.ndarray, float]]:
    """``(start, features (b, d) float32, seconds)`` of each batch of ``images``, in order."""
    dim = None
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        began = time.perf_counter()
        out = np.asarray(forward(images[start:stop]), dtype=np.float32)
        seconds = time.perf_counter() - began
        if out.ndim != 2 or len(out) != stop - start or (dim is not None and out.shape[1] != dim):
            raise ValueError(f"the forward pass returned features of shape {out.shape} for {stop - start} images"
                             + (f" of width {dim}" if dim is not None else ""))
        dim = out.shape[1]
        yield start, out, seconds


@dataclass(frozen=True)
class FeatureTable:
    """A model's features of some images, in memory (not stored): what :func:`compute_features` returns."""

    features: np.ndarray  # (n, d) float32
    labels: np.ndarray
    ids: list[str] | None
    forward_seconds: float

    @property
    def n_images(self) -> int:
        return len(self.features)

    def load(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``(n, d)`` float64 (the rows ``rows``, if given)."""
        values = self.features if rows is None else self.features[rows]
        return values.astype(np.float64)


def compute_features(forward: Forward, data: LabelledImages, batch_size: int = FORWARD_BATCH) -> FeatureTable:
    """One forward pass over ``data`` in memory (nothing stored): the same batches as the stored features."""
    if not len(data):
        raise ValueError("no image to compute features of")
    parts, seconds = [], 0.0
    for _, out, spent in _forward_batches(data.images, forward, batch_size):
        parts.append(out)
        seconds += spent
    return FeatureTable(np.concatenate(parts), np.asarray(data.labels), data.ids, seconds)


def write_model_features(directory: UPath, data: LabelledImages, forward: Forward, *,
                         batch_size: int = FORWARD_BATCH, attrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``forward`` over ``data`` a batch at a time and write the features group under ``directory``
    (see the module's doc); returns the summary (counts, content hash, forward seconds). ``attrs`` (model,
    dataset, selection, ...) are recorded beside the counts. Raises ``ValueError`` for no image or a forward
    pass of the wrong shape; ``directory`` then holds a partial group, which the caller's staging discards."""
    n = len(data)
    if not n:
        raise ValueError("no image to compute features of")
    ids = data.ids if data.ids is not None else [f"#{i}" for i in range(n)]
    group = zarr.create_group(store=zarr_store(as_upath(directory) / FEATURES_GROUP), zarr_format=3)
    digest, array, seconds, dim = hashlib.sha256(), None, 0.0, 0
    for start, out, spent in _forward_batches(data.images, forward, batch_size):
        if array is None:
            dim = out.shape[1]
            array = group.create_array("features", shape=(n, dim), dtype=np.float32, chunks=(min(batch_size, n), dim),
                                       fill_value=0, dimension_names=("image", "feature"))
        if not np.isfinite(out).all():
            logger.warning("non-finite features in rows %d-%d (stored as they are)", start, start + len(out) - 1)
        array[start : start + len(out)] = out
        digest.update(np.ascontiguousarray(out).tobytes())
        seconds += spent
    labels = np.asarray(data.labels, dtype=np.int64)
    group.create_array("labels", data=labels, dimension_names=("image",))
    id_array = group.create_array("image_ids", shape=(n,), dtype=str, chunks=(min(batch_size, n),),
                                  dimension_names=("image",))
    id_array[:] = np.asarray(ids, dtype=object)
    content_hash = hashlib.sha256(stable_json({
        "format": FEATURES_FORMAT, "shape": [n, dim], "dtype": "float32", "features_sha256": digest.hexdigest(),
        "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(), "ids": ids, "classes": list(data.classes),
    }).encode()).hexdigest()
    skipped = [{"path": p, "reason": r} for p, r in data.skipped]
    summary = {"n_images": n, "feature_dim": dim, "n_classes": len(data.classes), "n_skipped": len(skipped),
               "content_hash": content_hash, "forward_seconds": seconds}
    group.update_attributes({
        **dict(attrs or {}), "format": FEATURES_FORMAT, "class_names": list(data.classes), "dtype": "float32",
        "batch_size": batch_size, "counts": {k: summary[k] for k in ("n_images", "feature_dim", "n_classes", "n_skipped")},
        "skipped": skipped[:MAX_LISTED_SKIPPED], "skipped_total": len(skipped), "forward_seconds": seconds,
        "content_hash": content_hash,
    })
    return summary


class ModelFeatures:
    """A published features artifact, read lazily: ``labels``, ``image_ids`` and the attrs at once, the
    ``(n, d)`` features on :meth:`load` (all rows or some). Open with :func:`read_model_features`."""

    def __init__(self, directory: UPath):
        self.directory = as_upath(directory)
        where = self.directory / FEATURES_GROUP
        try:
            group = zarr.open_group(store=zarr_store(where, read_only=True), mode="r")
            self.attrs: dict[str, Any] = dict(group.attrs)
            self._features = group["features"]
            self.labels = np.asarray(group["labels"][:], dtype=np.int64)
            self.image_ids = [str(v) for v in group["image_ids"][:]]
        except (FileNotFoundError, KeyError, zarr.errors.BaseZarrError) as error:
            raise FeaturesError(f"{where}: not a features group: {type(error).__name__}: {error}") from error
        if self.attrs.get("format") != FEATURES_FORMAT:
            raise FeaturesError(f"{where}: format {self.attrs.get('format')!r} is not {FEATURES_FORMAT!r}")
        counts = self.attrs.get("counts", {})
        shape = tuple(self._features.shape)
        if shape != (counts.get("n_images"), counts.get("feature_dim")) or len(self.labels) != shape[0] \
                or len(self.image_ids) != shape[0]:
            raise FeaturesError(f"{where}: inconsistent: features {shape}, {len(self.labels)} labels, "
                                f"{len(self.image_ids)} ids, counts {counts}")
        self.forward_seconds = float(self.attrs.get("forward_seconds", 0.0))

    @property
    def n_images(self) -> int:
        return int(self._features.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self._features.shape[1])

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs["class_names"])

    def load(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``(n, d)`` float64 features (of ``rows``, in that order, if given); reads only the chunks needed."""
        if rows is None:
            return np.asarray(self._features[:], dtype=np.float64)
        rows = np.asarray(rows, dtype=np.int64)
        return np.asarray(self._features.get_orthogonal_selection((rows, slice(None))), dtype=np.float64)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray | None:
        """The rows of the images ``ids``, in that order; None when one of them is not in this artifact."""
        position = {image: row for row, image in enumerate(self.image_ids)}
        try:
            return np.array([position[image] for image in ids], dtype=np.int64)
        except KeyError:
            return None


def read_model_features(directory: UPath) -> ModelFeatures:
    """The features artifact at ``directory`` (see the module's doc). A folder without a manifest was never
    published (a killed or failed write): :class:`FeaturesError`, as for any unreadable group."""
    if read_manifest(directory) is None:
        raise FeaturesError(f"{directory}: no published features artifact (no manifest)")
    return ModelFeatures(directory)


def features_inputs(cell: ZooCell, dataset_fingerprint: str) -> dict[str, str]:
    """The cache-key inputs of a model's features of a dataset: what determines them, nothing else."""
    card = cell.card.transfer_fingerprint() if cell.card is not None else f"no card: {cell.problem}"
    return {"dataset": dataset_fingerprint, "checkpoint": cell.checkpoint_sha256, "card": card,
            "architecture": cell.architecture or ""}


def _features_config(selection: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    return {"selection": dict(selection), "batch_size": batch_size, "dtype": "float32"}


def features_cache_key(cell: ZooCell, dataset_fingerprint: str, selection: Mapping[str, Any],
                       batch_size: int = FORWARD_BATCH) -> str:
    """The key :func:`cached_model_features` publishes these features under."""
    return cache_key_of(FEATURES_ASSET, FEATURES_CODE_VERSION, _features_config(selection, batch_size),
                        features_inputs(cell, dataset_fingerprint))


def published_model_features(store: ArtifactStoreLike, cell: ZooCell, *, dataset: str, dataset_fingerprint: str,
                             selection: Mapping[str, Any], batch_size: int = FORWARD_BATCH) -> ModelFeatures | None:
    """The features already in the store, or None; never computes or writes anything (a read-only caller)."""
    key = features_cache_key(cell, dataset_fingerprint, selection, batch_size)
    if store.lookup(FEATURES_ASSET, dataset, key) is None:
        return None
    return read_model_features(store.artifact_dir(FEATURES_ASSET, dataset, key))


def cached_model_features(
    store: ArtifactStoreLike,
    cell: ZooCell,
    *,
    dataset: str,
    dataset_fingerprint: str,
    selection: Mapping[str, Any],
    images: Callable[[], LabelledImages],
    batch_size: int = FORWARD_BATCH,
) -> tuple[ModelFeatures, bool]:
    """``(features, cache hit)`` of ``cell``'s model on a dataset's selected images, from the store or computed
    (``images()`` decodes them: called on a miss only; the model is loaded on a miss only) and published
    under ``<root>/model_features/<dataset>/<key>``. ``dataset`` is the store partition (the dataset's key);
    ``selection`` says which images ``images()`` gives (:func:`scoring_selection`, :func:`token_selection`).
    Raises what the forward pass raises (``TransferError`` for a model that cannot be loaded); nothing is
    then published."""

    def build(directory: UPath) -> tuple[str, dict[str, Any]]:
        data = images()
        attrs = {"model": {"name": cell.name, "key": cell.key, "checkpoint_sha256": cell.checkpoint_sha256,
                           "card_fingerprint": features_inputs(cell, dataset_fingerprint)["card"],
                           "architecture": cell.architecture},
                 "dataset": {"key": dataset, "fingerprint": dataset_fingerprint}, "selection": dict(selection),
                 "code_version": FEATURES_CODE_VERSION}
        summary = write_model_features(directory, data, zoo_model_runner(cell), batch_size=batch_size, attrs=attrs)
        return summary["content_hash"], summary

    key, _, hit = build_cached(store, asset=FEATURES_ASSET, partition=dataset, code_version=FEATURES_CODE_VERSION,
                         config=_features_config(selection, batch_size), inputs=features_inputs(cell, dataset_fingerprint),
                         build=build, log=None)
    return read_model_features(store.artifact_dir(FEATURES_ASSET, dataset, key)), hit
