"""Store one flattened checkpoint as a zarr v3 group: ``chunks (n_chunks, 8192)`` + index attrs.

Layout of the group at ``out_dir``:

* ``chunks``: float32 (or float64) array ``(n_chunks, chunk_size)``, zarr chunks of
  ``block_rows`` rows; the last row is zero-padded;
* ``valid_length``: int32 ``(n_chunks,)``, real values per row (``chunk_size`` except the last);
* attrs ``index``: the :class:`~ml_core.weights.flatten.FlattenIndex` (per-tensor name, shape, dtype,
  offset; skipped integer buffers) and ``source``: what was read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ml_core.artifacts import as_upath, zarr_store
from ml_core.weights.checkpoints import CheckpointReader
from ml_core.weights.flatten import CHUNK_SIZE, FlattenIndex, flatten_checkpoint, plan_flatten, require_float_tensors


@dataclass(frozen=True)
class FlattenConfig:
    """How a checkpoint is flattened: values per chunk, chunks per zarr block (and per write)."""

    chunk_size: int = CHUNK_SIZE
    block_rows: int = 64


@dataclass(frozen=True)
class ParametersSummary:
    n_chunks: int
    chunk_size: int
    total_values: int
    n_tensors: int
    n_skipped: int
    skipped_names: tuple[str, ...]
    all_finite: bool
    content_hash: str


def write_model_parameters(
    reader: CheckpointReader,
    out_dir: Any,
    *,
    chunk_size: int = CHUNK_SIZE,
    block_rows: int = 64,
    source: dict[str, Any] | None = None,
) -> ParametersSummary:
    """Flatten ``reader`` into a new zarr group at ``out_dir`` (streaming, block by block).

    Raises CheckpointError before anything is written when the checkpoint has no float tensor.
    """
    index = plan_flatten(reader.tensor_infos(), chunk_size)
    require_float_tensors(index, reader.path)
    group = zarr.open_group(zarr_store(as_upath(out_dir)), mode="w")
    n_rows = max(index.n_chunks, 1)
    chunks = group.create_array(
        "chunks",
        shape=(n_rows, chunk_size),
        chunks=(min(block_rows, n_rows), chunk_size),
        dtype=index.chunk_dtype,
        fill_value=0.0,
    )

    finite = [True]

    def write_block(first_row: int, block: np.ndarray) -> None:
        finite[0] = finite[0] and bool(np.isfinite(block).all())
        chunks[first_row : first_row + block.shape[0]] = block

    index, content_hash = flatten_checkpoint(
        reader, write_block, chunk_size=chunk_size, block_rows=block_rows
    )
    group.create_array("valid_length", data=index.valid_lengths().astype(np.int32))
    group.attrs.update({"index": index.to_dict(), "source": source or {}, "content_hash": content_hash})
    return ParametersSummary(
        n_chunks=index.n_chunks,
        chunk_size=chunk_size,
        total_values=index.total_values,
        n_tensors=len(index.entries),
        n_skipped=len(index.skipped),
        skipped_names=tuple(s.name for s in index.skipped),
        all_finite=finite[0],
        content_hash=content_hash,
    )


@dataclass
class ModelParameters:
    """A stored flattened model: lazy ``chunks`` array ``(n_chunks, chunk_size)`` and its index."""

    chunks: zarr.Array
    valid_length: np.ndarray
    index: FlattenIndex
    attrs: dict[str, Any]

    @property
    def n_chunks(self) -> int:
        return int(self.chunks.shape[0])

    def valid_mask(self, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Boolean ``(rows, chunk_size)``: True where a value is real, False on padding."""
        lengths = self.valid_length if rows is None else self.valid_length[rows]
        return np.arange(self.index.chunk_size)[None, :] < lengths[:, None]


def read_model_parameters(path: Any) -> ModelParameters:
    group = zarr.open_group(zarr_store(as_upath(path), read_only=True), mode="r")
    attrs = dict(group.attrs)
    return ModelParameters(
        chunks=group["chunks"],
        valid_length=np.asarray(group["valid_length"][:]).astype(np.int64),
        index=FlattenIndex.from_dict(attrs["index"]),
        attrs=attrs,
    )
