"""Dataset tokens: CLIP image features of a dataset in class-balanced rows, streamed to zarr.

Layout of the zarr v3 group written by :func:`write_dataset_tokens`:

* ``features`` (R, C, D) float16/float32: row r holds the feature of the r-th image of every
  class (one image per class per row), chunks (1, C, D), shards (rows_per_shard, C, D);
* ``valid`` (R, C) bool: False where a class has no r-th image, or that image was unreadable;
  such slots stay 0 and are never data;
* ``class_ids`` (C,) int32: index into ``attrs["class_names"]``;
* group attrs: format, dataset, split, class names, encoder description, preprocessing, config,
  counts, skipped files (capped list + total), content hash.

R = the largest number of images in one class, capped by ``max_rows``; each class's images are
taken in a seeded shuffled order, so a cap picks a random but reproducible subset. Images are
decoded and encoded ``batch_size`` at a time and each shard is written as soon as all of its
slots are encoded, so memory is about one batch of images plus one or two shards of features
whatever the number of images.

Decoding and preprocessing run in a pool of worker processes (``TokenWriterConfig.num_workers``,
``decode_in``) one batch ahead of the encoder, so that they overlap with its forward pass: at most
two batches of preprocessed images exist at once, whatever the number of images. The workers run
the same decoding function as the serial path, in the same order, so the tokens are bit-identical
whatever the number of workers (0 = decode in this process).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import zarr
from upath import UPath

from ml_core.artifacts import as_upath, stable_json, zarr_store
from ml_core.images.folders import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, ImageFolderIndex, load_rgb_with_reason
from ml_core.progress import progress

logger = logging.getLogger(__name__)

TOKENS_FORMAT = "modelrec.dataset_tokens/v1"
MAX_LISTED_SKIPPED = 100
#: Settings of :class:`TokenWriterConfig` that change how tokens are computed, never what they are.
EXECUTION_FIELDS = frozenset({"num_workers", "decode_in"})
#: Most decoding workers ``num_workers=None`` picks.
MAX_AUTO_DECODE_WORKERS = 8


class DatasetTokensError(ValueError):
    """Dataset tokens cannot be written or read; the message names the folder and the counts."""


class ImageEncoderLike(Protocol):
    """What the writer needs of an encoder (see :class:`ml_core.images.encoders.LoadedImageEncoder`)."""

    feature_dim: int
    preprocess: Callable[[Any], torch.Tensor]

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class TokenWriterConfig:
    """How dataset tokens are laid out and computed.

    ``min_valid_fraction``: least fraction of the attempted images that must decode;
    ``min_images_per_class``: valid images a class needs to count towards ``min_classes``.
    ``num_workers`` > 0 decodes and preprocesses images in that many workers, one batch ahead of the
    encoder (``decode_in="process"``: worker processes, which overlap with the encoder's forward
    pass; ``"thread"``: threads, which share this process's GIL). 0 decodes in this process, between
    batches. None (the default) picks: 0 when all images fit in one batch (nothing to overlap), else
    one worker per usable CPU, at most :data:`MAX_AUTO_DECODE_WORKERS` (a CPU encoder keeps every
    core busy, so decoding costs the same CPU time however it is split; more workers shorten the
    wait for a batch). The tokens are the same whatever these two settings (:data:`EXECUTION_FIELDS`:
    left out of cache keys). Threads are the default: on a 2-core CPU with open_clip ViT-B-32 at 224 px
    they gave 89% of the bare encoder's throughput against 85% for processes (forked workers cost
    copy-on-write faults); processes help where decoding needs more than one core's GIL (a GPU encoder).
    ``max_image_pixels`` / ``max_aspect_ratio``: larger or stranger images are skipped from their
    header, never decoded (decompression bombs; see :mod:`ml_core.images.folders`).
    """

    rows_per_shard: int = 16
    max_rows: int | None = 64
    batch_size: int = 64
    dtype: Literal["float16", "float32"] = "float16"
    seed: int = 0
    num_workers: int | None = None
    decode_in: Literal["process", "thread"] = "thread"
    min_valid_fraction: float = 0.5
    min_images_per_class: int = 1
    min_classes: int = 2
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_aspect_ratio: float = MAX_ASPECT_RATIO

    def __post_init__(self) -> None:
        if self.rows_per_shard < 1 or self.batch_size < 1 or (self.num_workers is not None and self.num_workers < 0):
            raise ValueError(f"invalid TokenWriterConfig: {self}")
        if self.decode_in not in ("process", "thread"):
            raise ValueError(f"TokenWriterConfig.decode_in must be 'process' or 'thread', got {self.decode_in!r}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"TokenWriterConfig.max_rows must be >= 1 or None, got {self.max_rows}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"TokenWriterConfig.dtype must be float16 or float32, got {self.dtype!r}")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {self.min_valid_fraction}")


#: How a model's sample of pre-training images is encoded (``model_source_tokens``): at most 32 images
#: per class, float32, and a sample of a single class is enough.
SOURCE_SAMPLE_TOKENS = TokenWriterConfig(max_rows=32, dtype="float32", min_classes=1)


@dataclass(frozen=True)
class SkippedImage:
    path: str  # relative to the dataset folder
    reason: str


@dataclass
class TokensSummary:
    """What :func:`write_dataset_tokens` wrote. ``peak_buffered_rows``: most feature rows held at once."""

    n_rows: int
    n_classes: int
    feature_dim: int
    n_valid: int
    n_skipped: int
    skipped: list[SkippedImage]
    content_hash: str
    class_names: list[str] = field(default_factory=list)
    valid_per_class: list[int] = field(default_factory=list)
    n_shards: int = 0
    peak_buffered_rows: int = 0


@dataclass(frozen=True)
class _Slot:
    row: int
    column: int
    path: Path


@dataclass
class _ShardBuffer:
    start: int
    features: np.ndarray  # (rows, C, D) float32
    valid: np.ndarray  # (rows, C) bool
    remaining: int  # slots not yet encoded


# --- layout ----------------------------------------------------------------------------------


def _class_seed(seed: int, class_name: str) -> list[int]:
    digest = hashlib.sha256(class_name.encode()).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def plan_rows(index: ImageFolderIndex, config: TokenWriterConfig) -> list[list[Path]]:
    """Per class, the images used, in row order: a seeded shuffle, cut to the number of rows.

    The order of a class depends only on the seed, its name and its files, so adding a class
    does not change which images another class uses.
    """
    n_rows = max(index.images_per_class, default=0)
    if config.max_rows is not None:
        n_rows = min(n_rows, config.max_rows)
    columns = []
    for class_name, files in zip(index.classes, index.files, strict=True):
        order = np.random.default_rng(_class_seed(config.seed, class_name)).permutation(len(files))
        columns.append([files[i] for i in order[:n_rows]])
    return columns


def _slots(columns: Sequence[Sequence[Path]], n_rows: int) -> Iterator[_Slot]:
    """Row-major slots: (row 0, class 0), (row 0, class 1), ...; empty slots are left out."""
    for row in range(n_rows):
        for column, files in enumerate(columns):
            if row < len(files):
                yield _Slot(row, column, files[row])


def _batched(items: Iterator[_Slot], size: int) -> Iterator[list[_Slot]]:
    batch: list[_Slot] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- decoding --------------------------------------------------------------------------------


def _decode(
    path: Path, preprocess: Callable[[Any], torch.Tensor], config: TokenWriterConfig
) -> tuple[torch.Tensor | None, str | None]:
    image, reason = load_rgb_with_reason(
        path, max_pixels=config.max_image_pixels, max_aspect_ratio=config.max_aspect_ratio
    )
    if image is None:
        return None, reason
    try:
        return preprocess(image), None
    except Exception as error:  # a decodable but unusable image (e.g. 0x0): skip it
        return None, f"preprocessing failed: {type(error).__name__}: {error}"


def decode_workers(config: TokenWriterConfig, n_images: int) -> int:
    """How many decoding workers ``config`` asks for, for ``n_images`` images (see :class:`TokenWriterConfig`)."""
    if config.num_workers is not None:
        return config.num_workers
    if n_images <= config.batch_size:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_DECODE_WORKERS, cpus))


#: What a decoding process returns instead of the tensor when it wrote it into a shared batch buffer.
_IN_SHARED_BUFFER = "in shared buffer"
#: Tasks per decoding process and batch (each a run of consecutive images of the batch).
_CHUNKS_PER_WORKER = 2

# Set in each decoding process by :func:`_init_decode_process`: (preprocess, config, batch buffers).
_process_state: tuple[Callable[[Any], torch.Tensor], TokenWriterConfig, tuple[torch.Tensor, ...] | None] | None = None


def _init_decode_process(
    preprocess: Callable[[Any], torch.Tensor], config: TokenWriterConfig, buffers: tuple[torch.Tensor, ...] | None
) -> None:
    global _process_state
    torch.set_num_threads(1)  # as torch's DataLoader workers: the encoder has the cores
    _process_state = (preprocess, config, buffers)


def _decode_in_process(paths: list[Path], buffer: int, start: int) -> list[tuple[Any, str | None]]:
    """:func:`_decode` of consecutive images of a batch (positions ``start``...) in a worker process.

    Each tensor is copied into ``buffers[buffer][position]`` (shared with the parent: nothing to
    pickle) when it has the buffers' shape and dtype, else it travels back as a numpy array."""
    assert _process_state is not None, "decoding process not initialised"
    preprocess, config, buffers = _process_state
    results: list[tuple[Any, str | None]] = []
    for position, path in enumerate(paths, start):
        tensor, reason = _decode(path, preprocess, config)
        if isinstance(tensor, torch.Tensor):
            target = buffers[buffer] if buffers is not None else None
            if target is not None and tensor.shape == target.shape[1:] and tensor.dtype == target.dtype:
                target[position].copy_(tensor)
                results.append((_IN_SHARED_BUFFER, reason))
            else:
                results.append((tensor.numpy(), reason))
        else:
            results.append((tensor, reason))
    return results


def _from_process(
    result: tuple[Any, str | None], buffers: tuple[torch.Tensor, ...] | None, buffer: int, position: int
) -> tuple[torch.Tensor | None, str | None]:
    value, reason = result
    if isinstance(value, str) and value == _IN_SHARED_BUFFER:
        assert buffers is not None
        return buffers[buffer][position], reason
    return (torch.from_numpy(value) if isinstance(value, np.ndarray) else value), reason


def _process_context() -> multiprocessing.context.BaseContext:
    """``fork`` where the platform has it (as torch's DataLoader: workers start in milliseconds and
    share the parent's pages), else the platform's default (spawn)."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _shared_batch_buffers(preprocess: Callable[[Any], torch.Tensor], batch_size: int) -> tuple[torch.Tensor, ...] | None:
    """Two ``(batch_size, *image shape)`` tensors in anonymous shared memory, which forked decoding
    processes write preprocessed images into (batch k into buffer k % 2). The shape and dtype are
    those of ``preprocess`` on a blank image; None if that fails.

    Anonymous ``mmap`` memory is inherited by forked children, and, unlike torch's shared tensors,
    needs no room in ``/dev/shm`` (64 MB in a default container).
    """
    from PIL import Image

    try:
        probe = preprocess(Image.new("RGB", (256, 256), (128, 128, 128)))
    except Exception as error:  # a preprocess that wants a real image: pickle every tensor instead
        logger.debug("no shared batch buffers: preprocessing a blank image failed: %s", error)
        return None
    if not isinstance(probe, torch.Tensor) or probe.device.type != "cpu" or probe.numel() == 0:
        return None
    shape, dtype = (batch_size, *probe.shape), probe.dtype
    nbytes = int(np.prod(shape)) * probe.element_size()
    return tuple(torch.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).view(shape) for _ in range(2))


def _decode_pool(
    workers: int, preprocess: Callable[[Any], torch.Tensor], config: TokenWriterConfig, label: str
) -> tuple[Executor, bool, tuple[torch.Tensor, ...] | None]:
    """(executor, True for processes, shared batch buffers): processes if ``decode_in="process"``
    and this process may have children, else threads (and no buffers)."""
    if config.decode_in == "process":
        if multiprocessing.current_process().daemon:  # e.g. a multiprocessing pool's worker
            logger.warning("%s: a daemonic process cannot start decoding processes; decoding in %d threads",
                           label, workers)
        else:
            context = _process_context()
            forked = context.get_start_method() == "fork"
            buffers = _shared_batch_buffers(preprocess, config.batch_size) if forked else None
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_init_decode_process,
                initargs=(preprocess, config, buffers),
            )
            return pool, True, buffers
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode"), False, None


def _decoded_batches(
    batches: Iterator[list[_Slot]],
    preprocess: Callable[[Any], torch.Tensor],
    config: TokenWriterConfig,
    workers: int = 0,
    label: str = "",
) -> Iterator[tuple[list[_Slot], list[tuple[torch.Tensor | None, str | None]]]]:
    """Decode batch by batch, in slot order: (slots, [(tensor or None, reason or None)]).

    With workers, the next batch is decoded while this one is encoded: at most two batches are
    submitted or decoded at once (bounded memory). Worker processes may hand tensors over in a
    shared buffer that the batch after next overwrites: use (stack) a batch's tensors before
    asking for the next one. Close the generator (``contextlib.closing``) to stop the workers early.
    """
    if workers == 0:
        for batch in batches:
            yield batch, [_decode(slot.path, preprocess, config) for slot in batch]
        return
    pool, in_processes, buffers = _decode_pool(workers, preprocess, config, label)
    try:

        def submit(batch: list[_Slot], buffer: int) -> list[Future]:
            if in_processes:  # a few tasks per worker and batch: fewer wake-ups of this process's threads
                size = -(-len(batch) // (_CHUNKS_PER_WORKER * workers))
                return [pool.submit(_decode_in_process, [slot.path for slot in batch[i : i + size]], buffer, i)
                        for i in range(0, len(batch), size)]
            return [pool.submit(_decode, slot.path, preprocess, config) for slot in batch]

        current, number = next(batches, None), 0
        futures = submit(current, 0) if current is not None else []
        while current is not None:
            upcoming = next(batches, None)  # into the other buffer: the one of the batch already encoded
            try:
                next_futures = submit(upcoming, (number + 1) % 2) if upcoming is not None else []
                results = [f.result() for f in futures]
                if in_processes:
                    results = [_from_process(r, buffers, number % 2, i)
                               for i, r in enumerate(r for chunk in results for r in chunk)]
            except BrokenProcessPool as error:
                names = ", ".join(str(slot.path) for slot in current[:3])
                raise DatasetTokensError(
                    f"{label}: a decoding worker process died ({error}) while decoding a batch of "
                    f"{len(current)} images ({names}, ...); decode in this process with num_workers=0 "
                    f"to see which image crashes the decoder"
                ) from error
            yield current, results
            current, futures, number = upcoming, next_futures, number + 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- writing ---------------------------------------------------------------------------------


def write_dataset_tokens(
    index: ImageFolderIndex,
    encoder: ImageEncoderLike,
    out_dir: UPath,
    config: TokenWriterConfig | None = None,
) -> TokensSummary:
    """Encode the images of ``index`` and write the token group at ``out_dir`` (must not exist).

    Streams: at most one batch of decoded images (two with decoding workers) and the shards
    that batch touches are in memory. Unreadable images are skipped and their slots left invalid.
    Raises :class:`DatasetTokensError` if too little is left (fewer than ``min_classes`` classes
    with ``min_images_per_class`` valid images, or a valid fraction below ``min_valid_fraction``);
    ``out_dir`` may then hold a partial group, which the caller discards.
    """
    config = config or TokenWriterConfig()
    out_dir = as_upath(out_dir)
    label = f"{index.dataset_dir} [split {index.split}]"
    n_classes = len(index.classes)
    classes_with_files = sum(1 for n in index.images_per_class if n > 0)
    if classes_with_files < config.min_classes:
        unreadable = "".join(f"; {folder}: {reason}" for folder, reason in index.unreadable[:3])
        raise DatasetTokensError(
            f"{label}: {classes_with_files} of {n_classes} classes have image files "
            f"({index.n_images} images); dataset tokens need at least {config.min_classes}{unreadable}"
        )

    columns = plan_rows(index, config)
    n_rows = max(len(files) for files in columns)
    n_attempted = sum(len(files) for files in columns)
    dim = int(encoder.feature_dim)
    rows_per_shard = config.rows_per_shard
    dtype = np.dtype(config.dtype)

    group = zarr.create_group(store=zarr_store(out_dir), zarr_format=3)
    features_array = group.create_array(
        "features",
        shape=(n_rows, n_classes, dim),
        dtype=dtype,
        chunks=(1, n_classes, dim),
        shards=(rows_per_shard, n_classes, dim),
        fill_value=0,
        dimension_names=("row", "class", "feature"),
    )
    valid_array = group.create_array(
        "valid",
        shape=(n_rows, n_classes),
        dtype=bool,
        chunks=(rows_per_shard, n_classes),
        fill_value=False,
        dimension_names=("row", "class"),
    )
    group.create_array("class_ids", data=np.arange(n_classes, dtype=np.int32), dimension_names=("class",))

    slots_per_shard = np.zeros(-(-n_rows // rows_per_shard), dtype=np.int64)
    for files in columns:
        for row in range(len(files)):
            slots_per_shard[row // rows_per_shard] += 1

    features_hash, valid_hash = hashlib.sha256(), hashlib.sha256()
    pending: dict[int, _ShardBuffer] = {}
    skipped: list[SkippedImage] = []
    valid_per_class = np.zeros(n_classes, dtype=np.int64)
    peak_rows = 0
    next_shard = 0

    def flush(shard: int) -> None:
        buffer = pending.pop(shard)
        stop = buffer.start + buffer.features.shape[0]
        stored = buffer.features.astype(dtype)
        if not np.isfinite(stored).all():
            overflow = np.isfinite(buffer.features).all()
            raise DatasetTokensError(
                f"{label}: rows {buffer.start}-{stop - 1} hold "
                + ("values too large for float16; use dtype='float32'" if overflow else "NaN/inf features")
            )
        features_array[buffer.start : stop] = stored
        valid_array[buffer.start : stop] = buffer.valid
        features_hash.update(np.ascontiguousarray(stored).tobytes())
        valid_hash.update(np.ascontiguousarray(buffer.valid).tobytes())

    n_batches = -(-n_attempted // config.batch_size)
    batches = _batched(_slots(columns, n_rows), config.batch_size)
    workers = decode_workers(config, n_attempted)
    decoding = contextlib.closing(_decoded_batches(batches, encoder.preprocess, config, workers, label))
    bar = progress(total=n_batches, desc=f"tokens {index.name}", unit="batch")
    with bar, decoding as decoded_batches:
        for batch, decoded in decoded_batches:
            good = [i for i, (tensor, _) in enumerate(decoded) if tensor is not None]
            encoded = None
            if good:
                encoded = encoder.encode(torch.stack([decoded[i][0] for i in good])).float().numpy()
                if encoded.shape != (len(good), dim):
                    raise DatasetTokensError(
                        f"{label}: encoder returned features of shape {encoded.shape}, "
                        f"expected ({len(good)}, {dim})"
                    )
            position = {i: k for k, i in enumerate(good)}
            for i, slot in enumerate(batch):
                shard = slot.row // rows_per_shard
                buffer = pending.get(shard)
                if buffer is None:
                    start = shard * rows_per_shard
                    rows = min(rows_per_shard, n_rows - start)
                    buffer = pending[shard] = _ShardBuffer(
                        start=start,
                        features=np.zeros((rows, n_classes, dim), dtype=np.float32),
                        valid=np.zeros((rows, n_classes), dtype=bool),
                        remaining=int(slots_per_shard[shard]),
                    )
                if i in position:
                    assert encoded is not None
                    buffer.features[slot.row - buffer.start, slot.column] = encoded[position[i]]
                    buffer.valid[slot.row - buffer.start, slot.column] = True
                    valid_per_class[slot.column] += 1
                else:
                    reason = decoded[i][1] or "unknown"
                    skipped.append(SkippedImage(index.relative(slot.path), reason))
                    logger.warning("skipping unreadable image %s: %s", slot.path, reason)
                buffer.remaining -= 1
            peak_rows = max(peak_rows, sum(b.features.shape[0] for b in pending.values()))
            while next_shard in pending and pending[next_shard].remaining == 0:
                flush(next_shard)
                next_shard += 1
            bar.update(1)
    if pending:  # cannot happen: every planned slot is visited exactly once
        raise RuntimeError(f"{label}: shards {sorted(pending)} were never completed")

    n_valid = int(valid_per_class.sum())
    folders = [SkippedImage(index.relative(folder).rstrip("/") + "/", reason) for folder, reason in index.unreadable]
    skipped = folders + skipped  # unreadable folders first: they hide a whole set of images
    _check_enough_left(label, config, n_attempted, n_valid, valid_per_class, skipped)

    class_names = list(index.classes)
    content_hash = hashlib.sha256(
        stable_json(
            {
                "format": TOKENS_FORMAT,
                "class_names": class_names,
                "shape": [n_rows, n_classes, dim],
                "dtype": config.dtype,
                "features_sha256": features_hash.hexdigest(),
                "valid_sha256": valid_hash.hexdigest(),
            }
        ).encode()
    ).hexdigest()
    description = encoder.describe()
    counts = {
        "n_rows": n_rows,
        "n_classes": n_classes,
        "feature_dim": dim,
        "n_images_found": index.n_images,
        "images_per_class": index.images_per_class,
        "n_attempted": n_attempted,
        "n_valid": n_valid,
        "n_skipped": len(skipped),
        "valid_per_class": valid_per_class.tolist(),
        "n_ignored_files": index.n_ignored,
        "empty_classes": index.empty_classes,
        "n_unreadable_folders": len(index.unreadable),
    }
    group.update_attributes(
        {
            "format": TOKENS_FORMAT,
            "dataset": index.name,
            "split": index.split,
            "splits": list(index.splits),
            "class_names": class_names,
            "encoder": description,
            "encoder_fingerprint": encoder.fingerprint(),
            "preprocessing": description.get("preprocessing"),
            "config": asdict(config),
            "counts": counts,
            "skipped": [asdict(s) for s in skipped[:MAX_LISTED_SKIPPED]],
            "skipped_total": len(skipped),
            "content_hash": content_hash,
        }
    )
    logger.info(
        "%s: wrote %d rows x %d classes x %d-d tokens (%d valid, %d skipped) to %s",
        label,
        n_rows,
        n_classes,
        dim,
        n_valid,
        len(skipped),
        out_dir,
    )
    return TokensSummary(
        n_rows=n_rows,
        n_classes=n_classes,
        feature_dim=dim,
        n_valid=n_valid,
        n_skipped=len(skipped),
        skipped=skipped,
        content_hash=content_hash,
        class_names=class_names,
        valid_per_class=valid_per_class.tolist(),
        n_shards=len(slots_per_shard),
        peak_buffered_rows=peak_rows,
    )


def _check_enough_left(
    label: str,
    config: TokenWriterConfig,
    n_attempted: int,
    n_valid: int,
    valid_per_class: np.ndarray,
    skipped: list[SkippedImage],
) -> None:
    usable = int((valid_per_class >= max(config.min_images_per_class, 1)).sum())
    fraction = n_valid / n_attempted if n_attempted else 0.0
    if usable >= config.min_classes and fraction >= config.min_valid_fraction:
        return
    examples = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
    raise DatasetTokensError(
        f"{label}: too little is left after skipping unreadable images: {n_valid} of "
        f"{n_attempted} images decoded ({fraction:.0%}, need >= {config.min_valid_fraction:.0%}); "
        f"{usable} classes with >= {config.min_images_per_class} valid images (need "
        f">= {config.min_classes}); {len(skipped)} skipped, e.g. {examples or 'none'}"
    )


# --- reading ---------------------------------------------------------------------------------


@dataclass
class DatasetTokens:
    """Dataset tokens in memory: ``features`` (R, C, D) float32, ``valid`` (R, C) bool."""

    features: np.ndarray
    valid: np.ndarray
    class_names: list[str]
    attrs: dict[str, Any]

    @property
    def present_classes(self) -> list[str]:
        """Names of the classes with at least one valid image (the rows of :meth:`class_means`)."""
        has_data = self.valid.any(axis=0)
        return [name for name, keep in zip(self.class_names, has_data, strict=True) if keep]

    def class_means(self) -> np.ndarray:
        """(C', D) float32: mean feature of each class over its valid slots only.

        Classes with no valid image are dropped (C' = len(:attr:`present_classes`)).
        """
        weights = self.valid.astype(np.float64)  # (R, C)
        counts = weights.sum(axis=0)  # (C,)
        sums = np.einsum("rc,rcd->cd", weights, self.features.astype(np.float64))
        keep = counts > 0
        return (sums[keep] / counts[keep, None]).astype(np.float32)

    def as_token_set(
        self,
        max_rows: int | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flatten rows to a token sequence: tokens (M, D) float32 and mask (M,) bool, M = rows x C.

        With ``max_rows`` < R, a subset of rows is kept: random (sorted) when ``rng`` is given,
        else the first rows (already a seeded random subset of the images). Masked tokens are 0.
        """
        n_rows = self.features.shape[0]
        rows = np.arange(n_rows)
        if max_rows is not None and max_rows < n_rows:
            if rng is None:
                rows = rows[:max_rows]
            else:
                generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
                rows = np.sort(generator.choice(n_rows, size=max_rows, replace=False))
        dim = self.features.shape[-1]
        tokens = self.features[rows].reshape(-1, dim).astype(np.float32, copy=True)
        mask = self.valid[rows].reshape(-1).copy()
        tokens[~mask] = 0.0
        return tokens, mask


def read_dataset_tokens(path: UPath) -> DatasetTokens:
    """Read a token group written by :func:`write_dataset_tokens` (features cast to float32)."""
    path = as_upath(path)
    try:
        group = zarr.open_group(store=zarr_store(path, read_only=True), mode="r")
        attrs = dict(group.attrs)
        features = np.asarray(group["features"][:], dtype=np.float32)
        valid = np.asarray(group["valid"][:], dtype=bool)
    except (FileNotFoundError, KeyError, zarr.errors.BaseZarrError) as error:
        raise DatasetTokensError(f"{path}: not a dataset-token group: {type(error).__name__}: {error}") from error
    if attrs.get("format") != TOKENS_FORMAT:
        raise DatasetTokensError(f"{path}: format {attrs.get('format')!r} is not {TOKENS_FORMAT!r}")
    class_names = list(attrs["class_names"])
    if features.ndim != 3 or valid.shape != features.shape[:2] or len(class_names) != features.shape[1]:
        raise DatasetTokensError(
            f"{path}: inconsistent shapes: features {features.shape}, valid {valid.shape}, "
            f"{len(class_names)} class names"
        )
    return DatasetTokens(features=features, valid=valid, class_names=class_names, attrs=attrs)


def dataset_descriptor(tokens: DatasetTokens) -> np.ndarray:
    """Unit-length mean feature ``(D,)`` over the valid image slots of a dataset."""
    features = tokens.features[tokens.valid].astype(np.float64)
    if not len(features):
        raise ValueError("dataset has no valid image features")
    mean = features.mean(0)
    norm = np.linalg.norm(mean)
    return mean / norm if norm > 0 else mean
