"""A flattened model read back as *weight tokens*: rows of its tensors cut into small fixed-size pieces.

The 8192-value chunks of :mod:`~ml_core.weights.parameters` are the storage format; they cut across
tensors and neurons, so a chunk means nothing on its own and a small model has only a handful. Weight
tokens follow the network's structure instead (as SANE, Schürholt et al. 2024, does):

* a tensor of shape ``(out, *rest)`` is ``out`` rows of ``prod(rest)`` values, one row per output
  neuron (a conv filter, a linear unit); a 1-D tensor (bias, norm scale, running statistic) is one row;
* each row is cut into pieces of ``token_size`` values; the last piece of a row is zero-padded and
  a mask marks its real values;
* every token is divided by its RMS (its *shape*), and the log-RMS (its *scale*) becomes a feature;
* each token carries position features (:data:`POSITION_FEATURES`): the tensor's relative depth in
  the network, its role (conv / linear / vector / running statistic / other), the row's relative
  index in the tensor, the piece's relative index in the row, log fan-in and log fan-out.

A small model (50k parameters) gives about a thousand tokens; the models are read one tensor at a
time (:func:`iter_tensors`), so memory never holds more than one tensor of a model.

:func:`weight_statistics` is the trivial descriptor every learned embedding must beat: the parameter
and tensor counts and per-depth-quartile means of per-tensor mean, std and RMS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ml_core.weights.flatten import TensorEntry
from ml_core.weights.parameters import ModelParameters

ROLES = ("conv", "linear", "vector", "running_stat", "other")
#: The columns of :attr:`WeightTokens.positions`.
POSITION_FEATURES = (
    "depth", *(f"role_{r}" for r in ROLES), "row", "piece", "log_fan_in", "log_fan_out", "log_rms",
)
N_POSITION_FEATURES = len(POSITION_FEATURES)
LOG_RMS_COLUMN = POSITION_FEATURES.index("log_rms")
_RUNNING = ("running_mean", "running_var")


def tensor_role(entry: TensorEntry) -> str:
    """``conv`` (>= 3-D with a spatial kernel), ``linear`` (2-D), ``vector`` (1-D), ``running_stat``
    (a norm layer's running mean / variance) or ``other`` (scalars, 3-D embeddings)."""
    if entry.name.endswith(_RUNNING):
        return "running_stat"
    if len(entry.shape) >= 4:
        return "conv"
    if len(entry.shape) == 2:
        return "linear"
    if len(entry.shape) == 1:
        return "vector"
    return "other"


_FIRST = ("stem", "conv_stem", "bn0", "conv1", "patch_embed", "embed", "embeddings", "cls_token", "pos_embed",
          "features.0")
_LAST = ("head", "fc", "classifier", "conv_head", "norm", "fc_norm", "pre_logits", "logits")


def _natural(name: str) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[._]", name) if part)


def network_order(entries: list[TensorEntry]) -> list[TensorEntry]:
    """The tensors in (approximate) network order. A checkpoint's keys come sorted by name
    (``blocks.0`` < ``head`` < ``stem``; ``blocks.10`` < ``blocks.2``); this puts stem-like top-level
    modules first and head-like ones last (by the usual timm / torchvision names), compares numbers
    as numbers, and keeps a module's tensors together."""

    def key(entry: TensorEntry) -> tuple:
        top = entry.name.lstrip("_").split(".")[0]
        stage = 0 if top in _FIRST or entry.name.lstrip("_").startswith(_FIRST) else 2 if top in _LAST else 1
        return stage, _natural(entry.name.lstrip("_"))

    return sorted(entries, key=key)


def iter_tensors(params: ModelParameters) -> Iterator[tuple[TensorEntry, np.ndarray]]:
    """Every flattened tensor, in :func:`network_order`, as a float32 array of its shape (read one at a time)."""
    size = params.index.chunk_size
    for entry in network_order(params.index.entries):
        if entry.numel == 0:
            continue
        first, last = entry.offset // size, (entry.offset + entry.numel - 1) // size
        rows = np.asarray(params.chunks[first : last + 1], dtype=np.float32).reshape(-1)
        start = entry.offset - first * size
        yield entry, rows[start : start + entry.numel].reshape(entry.shape)


@dataclass
class WeightTokens:
    """The tokens of one model (or a sample of them), in network order.

    ``values (T, token_size)`` float32 RMS-normalised pieces (0 on padding), ``mask (T, token_size)``
    bool real values, ``positions (T, N_POSITION_FEATURES)`` float32, ``depth (T,)`` the tensor's
    relative depth in [0, 1] (also column 0 of ``positions``).
    """

    values: np.ndarray
    mask: np.ndarray
    positions: np.ndarray

    @property
    def depth(self) -> np.ndarray:
        return self.positions[:, 0]

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def concatenate(cls, parts: list[WeightTokens], token_size: int) -> WeightTokens:
        if not parts:
            return cls(np.zeros((0, token_size), np.float32), np.zeros((0, token_size), bool),
                       np.zeros((0, N_POSITION_FEATURES), np.float32))
        return cls(np.concatenate([p.values for p in parts]), np.concatenate([p.mask for p in parts]),
                   np.concatenate([p.positions for p in parts]))

    def take(self, rows: np.ndarray | slice) -> WeightTokens:
        return WeightTokens(self.values[rows], self.mask[rows], self.positions[rows])


def row_pieces(rows: np.ndarray, token_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``(R, C)`` cut into ``pieces = ceil(C / token_size)`` tokens each (row-major, the last piece of a
    row zero-padded), each divided by its RMS: ``values (R * pieces, token_size)`` float32, ``mask`` (real
    values) and ``rms (R * pieces,)``."""
    n_rows, fan_in = rows.shape
    pieces = max(1, math.ceil(fan_in / token_size))
    padded = np.zeros((n_rows, pieces * token_size), np.float32)
    padded[:, :fan_in] = rows
    tokens = padded.reshape(n_rows * pieces, token_size)
    mask = np.zeros((n_rows, pieces * token_size), bool)
    mask[:, :fan_in] = True
    mask = mask.reshape(n_rows * pieces, token_size)
    counts = mask.sum(1)
    rms = np.sqrt((tokens.astype(np.float64) ** 2).sum(1) / counts)
    safe = np.where(rms > 1e-12, rms, 1.0)
    return (tokens / safe[:, None]).astype(np.float32), mask, rms


def tensor_tokens(entry: TensorEntry, values: np.ndarray, depth: float, token_size: int) -> WeightTokens:
    """The tokens of one tensor (see the module docstring); ``depth`` is its relative depth in [0, 1]."""
    rows = values.reshape(1, -1) if values.ndim <= 1 else values.reshape(values.shape[0], -1)
    n_rows, fan_in = rows.shape
    pieces = max(1, math.ceil(fan_in / token_size))
    tokens, mask, rms = row_pieces(rows, token_size)
    positions = np.zeros((len(tokens), N_POSITION_FEATURES), np.float32)
    positions[:, 0] = depth
    positions[:, 1 + ROLES.index(tensor_role(entry))] = 1.0
    row_index = np.repeat(np.arange(n_rows), pieces)
    piece_index = np.tile(np.arange(pieces), n_rows)
    positions[:, 1 + len(ROLES)] = row_index / max(n_rows - 1, 1)
    positions[:, 2 + len(ROLES)] = piece_index / max(pieces - 1, 1)
    positions[:, 3 + len(ROLES)] = math.log1p(fan_in) / 10.0
    positions[:, 4 + len(ROLES)] = math.log1p(n_rows) / 10.0
    positions[:, LOG_RMS_COLUMN] = np.log10(np.maximum(rms, 1e-8)) / 4.0
    return WeightTokens(tokens, mask, positions)


def model_tensor_tokens(params: ModelParameters, token_size: int = 64) -> Iterator[tuple[TensorEntry, np.ndarray, WeightTokens]]:
    """Every tensor of a model (network order) with its values and tokens; a tensor's depth is the
    fraction of the model's values before its middle."""
    total, seen = max(params.index.total_values, 1), 0
    for entry, values in iter_tensors(params):
        yield entry, values, tensor_tokens(entry, values, (seen + entry.numel / 2) / total, token_size)
        seen += entry.numel


def model_tokens(params: ModelParameters, token_size: int = 64) -> Iterator[WeightTokens]:
    """The tokens of a whole model, one tensor at a time (network order, see :func:`model_tensor_tokens`)."""
    for _entry, _values, tokens in model_tensor_tokens(params, token_size):
        yield tokens


def all_tokens(params: ModelParameters, token_size: int = 64) -> WeightTokens:
    """Every token of a model in one array (small models; large ones: iterate :func:`model_tokens`)."""
    return WeightTokens.concatenate(list(model_tokens(params, token_size)), token_size)


#: The columns of :func:`weight_statistics`.
STATISTIC_FEATURES = ("log10_parameters", "log10_tensors", *(
    f"q{q}_{s}" for q in range(4) for s in ("mean", "std", "rms")
))


def weight_statistics(params: ModelParameters) -> np.ndarray:
    """The trivial descriptor ``(14,)``: log10 parameter and tensor counts, and for each quartile of
    depth (by position in the flat vector) the means over its tensors of each tensor's mean, std and
    RMS (:data:`STATISTIC_FEATURES`); depth in :func:`network_order`. What a learned model embedding has to beat."""
    total, seen = max(params.index.total_values, 1), 0
    per_quartile: list[list[tuple[float, float, float]]] = [[] for _ in range(4)]
    n_tensors = 0
    for entry, values in iter_tensors(params):
        n_tensors += 1
        v = values.astype(np.float64).reshape(-1)
        quartile = min(int(4 * (seen + entry.numel / 2) / total), 3)
        seen += entry.numel
        per_quartile[quartile].append((float(v.mean()), float(v.std()), float(np.sqrt((v**2).mean()))))
    stats = [math.log10(total), math.log10(max(n_tensors, 1))]
    for rows in per_quartile:
        stats.extend(np.mean(rows, axis=0).tolist() if rows else [0.0, 0.0, 0.0])
    return np.asarray(stats, dtype=np.float64)
