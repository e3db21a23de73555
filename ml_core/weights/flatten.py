"""Flatten a whole network into fixed-size chunks, streaming, and undo it exactly.

Every floating-point tensor of the checkpoint, in the reader's stable order, is flattened
(row-major) and concatenated into one long vector that is cut into rows of ``chunk_size``
values: an array of shape ``(n_chunks, chunk_size)``. The last row is zero-padded; its valid
length is recorded. Integer and boolean tensors (``num_batches_tracked``, index buffers) are
not weights: they are skipped and listed in the index with the reason.

Values are stored as float32 (exact for fp16, bf16 and fp32 sources); a checkpoint that holds
float64 tensors is stored as float64 so that the round trip stays exact.

Streaming: tensors are read one at a time and written in blocks of ``block_rows`` chunks, so
peak memory is about one tensor (plus its float32 copy) and one block, never the whole model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ml_core.weights.checkpoints import CheckpointError, CheckpointReader, TensorInfo

CHUNK_SIZE = 8192


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the flat vector: values ``[offset, offset + numel)``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    numel: int


@dataclass(frozen=True)
class SkippedTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    reason: str


@dataclass
class FlattenIndex:
    """The per-tensor index of a flattened checkpoint (stored as attrs beside the chunks)."""

    chunk_size: int
    chunk_dtype: str
    total_values: int
    entries: list[TensorEntry] = field(default_factory=list)
    skipped: list[SkippedTensor] = field(default_factory=list)

    @property
    def n_chunks(self) -> int:
        return -(-self.total_values // self.chunk_size)

    def valid_lengths(self) -> np.ndarray:
        """Number of real (non-padding) values in each chunk, shape ``(n_chunks,)`` int64."""
        lengths = np.full(self.n_chunks, self.chunk_size, dtype=np.int64)
        if self.n_chunks:
            lengths[-1] = self.total_values - (self.n_chunks - 1) * self.chunk_size
        return lengths

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_size": self.chunk_size,
            "chunk_dtype": self.chunk_dtype,
            "total_values": self.total_values,
            "n_chunks": self.n_chunks,
            "entries": [asdict(e) | {"shape": list(e.shape)} for e in self.entries],
            "skipped": [asdict(s) | {"shape": list(s.shape)} for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlattenIndex:
        return cls(
            chunk_size=int(data["chunk_size"]),
            chunk_dtype=str(data["chunk_dtype"]),
            total_values=int(data["total_values"]),
            entries=[TensorEntry(**(e | {"shape": tuple(e["shape"])})) for e in data["entries"]],
            skipped=[SkippedTensor(**(s | {"shape": tuple(s["shape"])})) for s in data["skipped"]],
        )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def plan_flatten(infos: list[TensorInfo], chunk_size: int = CHUNK_SIZE) -> FlattenIndex:
    """Lay out the float tensors of ``infos`` (already in stable order) without reading values."""
    entries: list[TensorEntry] = []
    skipped: list[SkippedTensor] = []
    offset = 0
    wide = False
    for info in infos:
        name_dtype = _dtype_name(info.dtype)
        if not info.dtype.is_floating_point:
            reason = "complex tensor" if info.dtype.is_complex else "integer or boolean buffer"
            skipped.append(SkippedTensor(info.name, info.shape, name_dtype, reason))
            continue
        if info.numel == 0:
            skipped.append(SkippedTensor(info.name, info.shape, name_dtype, "empty tensor"))
            continue
        wide = wide or info.dtype == torch.float64
        entries.append(TensorEntry(info.name, info.shape, name_dtype, offset, info.numel))
        offset += info.numel
    return FlattenIndex(
        chunk_size=chunk_size,
        chunk_dtype="float64" if wide else "float32",
        total_values=offset,
        entries=entries,
        skipped=skipped,
    )


def require_float_tensors(index: FlattenIndex, path: object) -> None:
    """Raise CheckpointError (naming ``path`` and what it holds) when ``index`` has nothing to embed."""
    if not index.entries:
        kinds = ", ".join(sorted({s.dtype for s in index.skipped})) or "nothing"
        raise CheckpointError(f"{path}: no floating-point tensors to embed (found: {kinds})")


def iter_chunk_blocks(
    reader: CheckpointReader, index: FlattenIndex, block_rows: int = 64
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, block)`` with ``block`` of shape ``(rows, chunk_size)``, in order.

    Blocks hold ``block_rows`` rows except the last; padding values are 0.
    """
    size = index.chunk_size
    np_dtype = np.dtype(index.chunk_dtype)
    buffer = np.zeros(block_rows * size, dtype=np_dtype)
    filled = 0  # values in the buffer
    next_row = 0
    for entry in index.entries:
        tensor = reader.get(entry.name)
        if tuple(tensor.shape) != entry.shape:
            raise CheckpointError(
                f"{reader.path}: tensor {entry.name!r} has shape {tuple(tensor.shape)}, index says {entry.shape}"
            )
        flat = tensor.detach().reshape(-1).to(torch.float64 if np_dtype == np.float64 else torch.float32)
        values = flat.numpy()
        pos = 0
        while pos < values.size:
            take = min(values.size - pos, buffer.size - filled)
            buffer[filled : filled + take] = values[pos : pos + take]
            filled += take
            pos += take
            if filled == buffer.size:
                yield next_row, buffer.reshape(block_rows, size).copy()
                next_row += block_rows
                filled = 0
        del tensor, flat, values
    if filled:
        rows = -(-filled // size)
        buffer[filled : rows * size] = 0
        yield next_row, buffer[: rows * size].reshape(rows, size).copy()


def flatten_checkpoint(
    reader: CheckpointReader,
    write_block: Callable[[int, np.ndarray], None],
    *,
    chunk_size: int = CHUNK_SIZE,
    block_rows: int = 64,
) -> tuple[FlattenIndex, str]:
    """Stream every float tensor of ``reader`` into ``write_block(first_row, block)``.

    Returns the index and a SHA-256 of the chunk bytes and the index (the content hash).
    Raises CheckpointError when the checkpoint holds no float tensor.
    """
    index = plan_flatten(reader.tensor_infos(), chunk_size)
    require_float_tensors(index, reader.path)
    digest = hashlib.sha256()
    for first_row, block in iter_chunk_blocks(reader, index, block_rows):
        digest.update(block.tobytes())
        write_block(first_row, block)
    digest.update(repr(index.to_dict()).encode())
    return index, digest.hexdigest()


def unflatten(chunks: Any, index: FlattenIndex) -> dict[str, torch.Tensor]:
    """Rebuild every flattened tensor (original shape and dtype) from ``chunks`` ``(n_chunks, chunk_size)``.

    ``chunks`` may be a numpy array or a lazy array (zarr) supporting row slicing; only the rows
    covering one tensor are read at a time.
    """
    size = index.chunk_size
    out: dict[str, torch.Tensor] = {}
    for entry in index.entries:
        first, last = entry.offset // size, (entry.offset + entry.numel - 1) // size
        rows = np.asarray(chunks[first : last + 1]).reshape(-1)
        start = entry.offset - first * size
        values = torch.from_numpy(np.array(rows[start : start + entry.numel]))
        out[entry.name] = values.to(getattr(torch, entry.dtype)).reshape(entry.shape)
    return out
