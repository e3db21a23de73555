"""Read checkpoints tensor by tensor, without ever unpickling untrusted code.

Supported sources:

* ``.safetensors``: the header is validated by ``safetensors.safe_open`` (offsets in bounds,
  no overlap, the file fully covered), then each tensor's bytes are read with one positioned
  read into a fresh buffer when asked for: one tensor in memory at a time, and nothing of the
  file stays mapped into the process (a memory map would keep every page read so far resident);
* ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt``: ``torch.load(weights_only=True, mmap=True)``; a state
  dict, or a dict holding one under a usual key (``state_dict``, ``model``, ...) or under any
  single other key, or nested dicts of tensors (flattened with dotted names); optimizer and
  scheduler state is never taken for weights (see :func:`extract_state_dict`). A pickle that
  holds anything but tensors and plain containers (including a TorchScript archive) is refused
  before any of its code can run;
* an architecture name (``timm:resnet18``, ``torchvision:resnet18``) plus a local weights file:
  the network is built on the ``meta`` device (no memory, no download), the weights are loaded
  into it strictly (so a file that does not fit the architecture is an error), and its state
  dict is read.

Tensors come out in one stable order (natural sort of their names), so the same weights saved
in two formats flatten to the same chunks.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import struct
import sys
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ml_core.weights.architectures import UnknownArchitectureError, build_library_architecture

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
CHECKPOINT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
USUAL_STATE_DICT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "net",
    "network",
    "params",
    "weights",
    "model_ema",
    "state_dict_ema",
    "ema",
)
#: a key of the checkpoint container (the top two levels) holds training state, never weights, when
#: one of its words (split at ``_``, ``.``, ``-``, case-insensitive) is one of these: ``optimizer``,
#: ``lr_scheduler``, ``optimizer_states``, ``grad_scaler``...
NON_WEIGHT_KEY_WORDS = frozenset({"optim", "optimizer", "optimizers", "scheduler", "schedulers", "scaler", "amp"})
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E5M2FNUZ": torch.float8_e5m2fnuz,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "C64": torch.complex64,
}


class CheckpointError(ValueError):
    """A checkpoint could not be read safely; the message names the file and the problem."""


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of one stored tensor (read without loading its values)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key treating digit runs as numbers: ``layer.2`` before ``layer.10``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


class CheckpointReader:
    """Random access to the tensors of one checkpoint. Use as a context manager."""

    path: Path

    def tensor_infos(self) -> list[TensorInfo]:
        raise NotImplementedError

    def get(self, name: str) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for info in self.tensor_infos():
            yield info.name, self.get(info.name)


def _read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the byte offset where its data starts."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise CheckpointError(f"{path}: not a readable safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", prefix)
        raw = handle.read(length)
    if len(raw) != length:
        raise CheckpointError(f"{path}: not a readable safetensors file (header cut short)")
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a readable safetensors file (header is not a JSON object)")
    return header, 8 + length


class SafetensorsReader(CheckpointReader):
    """Streaming reader: only the tensor asked for is read from disk, into a buffer of its own.

    ``safetensors.safe_open`` validates the header first (dtypes, shapes, offsets in bounds and
    contiguous, the data fully covered), so a truncated or corrupted file fails here, naming it.
    Tensors are then read with plain positioned reads (little-endian, as the format stores them).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as validated:
                names = list(validated.keys())
            header, self._data_start = _read_safetensors_header(self.path)
            self._data_bytes = self.path.stat().st_size - self._data_start
        except CheckpointError:
            raise
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{self.path}: not a readable safetensors file ({err})") from err
        self._spans: dict[str, tuple[int, int]] = {}
        infos = []
        for name in names:
            infos.append(self._check_entry(name, header.get(name)))
        self._infos = sorted(infos, key=lambda i: natural_key(i.name))
        self._by_name = {info.name: info for info in self._infos}

    def _check_entry(self, name: str, entry: Any) -> TensorInfo:
        """Validate one header entry again (the file may have changed since safe_open read it)."""
        try:
            dtype_name = str(entry["dtype"])
            shape = tuple(int(s) for s in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{self.path}: tensor {name!r} has a malformed header entry ({err})") from err
        dtype = _SAFETENSORS_DTYPES.get(dtype_name)
        if dtype is None:
            raise CheckpointError(
                f"{self.path}: tensor {name!r} has dtype {dtype_name}, which torch cannot read "
                f"(supported: {', '.join(_SAFETENSORS_DTYPES)})"
            )
        info = TensorInfo(name, shape, dtype)
        expected = info.numel * dtype.itemsize
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= self._data_bytes or end - begin != expected:
            raise CheckpointError(
                f"{self.path}: tensor {name!r}: offsets [{begin}, {end}) do not hold shape {shape} of {dtype_name} "
                f"({expected} bytes) inside the {self._data_bytes} data bytes"
            )
        self._spans[name] = (self._data_start + begin, expected)
        return info

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def get(self, name: str) -> torch.Tensor:
        info = self._by_name.get(name)
        if info is None:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}")
        start, nbytes = self._spans[name]
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        view = memoryview(buffer.numpy())
        try:
            with self.path.open("rb") as handle:
                handle.seek(start)
                done = 0
                while done < nbytes:
                    got = handle.readinto(view[done:])
                    if not got:
                        break
                    done += got
        except OSError as err:
            raise CheckpointError(f"{self.path}: tensor {name!r} is unreadable ({err})") from err
        if done != nbytes:
            raise CheckpointError(
                f"{self.path}: tensor {name!r} is cut short ({done} of {nbytes} bytes): the file is truncated "
                f"or changed while being read"
            )
        width = info.dtype.itemsize // (2 if info.dtype.is_complex else 1)  # bytes per (real) component
        if sys.byteorder != "little" and width > 1:  # the format is little-endian
            buffer = torch.from_numpy(buffer.numpy().view(f"<u{width}").byteswap().view("u1"))
        return buffer.view(info.dtype).reshape(info.shape)


class StateDictReader(CheckpointReader):
    """Reader over an in-memory (or memory-mapped) mapping of names to tensors."""

    def __init__(self, path: Path, state_dict: Mapping[str, torch.Tensor]):
        self.path = Path(path)
        self._tensors = dict(state_dict)
        self._infos = sorted(
            (TensorInfo(k, tuple(v.shape), v.dtype) for k, v in self._tensors.items()),
            key=lambda i: natural_key(i.name),
        )

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def get(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def close(self) -> None:
        self._tensors.clear()


def _safe_torch_load(path: Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers; memory-mapped when possible."""
    try:
        mmap = zipfile.is_zipfile(path)  # the legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the pickle holds Python objects other than tensors and plain "
            f"containers, and untrusted checkpoints are never unpickled (convert it to .safetensors "
            f"where it came from). Detail: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        detail = "the file is empty" if path.stat().st_size == 0 else str(err).strip() or type(err).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({detail})") from err


def _collect_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if depth <= 1 and _is_training_state_key(key):  # container level only, not module names
                continue
            _collect_tensors(value, f"{prefix}.{key}" if prefix else str(key), out, depth + 1)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _collect_tensors(value, f"{prefix}.{i}" if prefix else str(i), out, depth + 1)


def _is_training_state_key(key: Any) -> bool:
    return not NON_WEIGHT_KEY_WORDS.isdisjoint(re.split(r"[^0-9a-z]+", str(key).casefold()))


def _holds_tensors(obj: Any, depth: int = 0) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if depth > 8:
        return False
    if isinstance(obj, Mapping):
        return any(_holds_tensors(v, depth + 1) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_holds_tensors(v, depth + 1) for v in obj)
    return False


def _find_state_dict(obj: Any, path: Path, depth: int = 0) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and depth <= 4:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        for key in USUAL_STATE_DICT_KEYS:
            if key in obj and _holds_tensors(obj[key]):
                logger.debug("%s: state dict found under key %r", path, key)
                return _find_state_dict(obj[key], path, depth + 1)
        training = {k for k in obj if depth <= 1 and _is_training_state_key(k)}  # container level only
        candidates = [k for k, v in obj.items() if k not in training and _holds_tensors(v)]
        skipped = [str(k) for k in training if _holds_tensors(obj[k])]
        if skipped:
            logger.info("%s: ignoring training state under %s (not weights)", path, skipped)
        if len(candidates) == 1 and isinstance(obj[candidates[0]], Mapping):
            logger.info("%s: state dict found under the unusual key %r", path, candidates[0])
            return _find_state_dict(obj[candidates[0]], path, depth + 1)
    tensors: dict[str, torch.Tensor] = {}
    _collect_tensors(obj, "", tensors)
    return tensors


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside a loaded checkpoint object.

    A flat mapping of tensors is taken as is. Otherwise, the first usual key
    (:data:`USUAL_STATE_DICT_KEYS`) holding tensors is followed; otherwise, if exactly one key
    that is not training state holds tensors (``{"teacher": {...}, "epoch": 3}``), that one;
    otherwise every tensor in the nested structure, named by its dotted path. Keys that look like
    optimizer / scheduler / grad-scaler state (:data:`NON_WEIGHT_KEY_WORDS`) are never taken.
    The search repeats inside what it finds (``{"checkpoint": {"model": {...}}}``). A common
    ``module.`` (DataParallel) or ``_orig_mod.`` (``torch.compile``) prefix is stripped.
    """
    tensors = _find_state_dict(obj, path)
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (type {type(obj).__name__})")
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def build_architecture_on_meta(architecture: str) -> torch.nn.Module:
    """Build ``timm:<name>`` or ``torchvision:<name>`` on the meta device (no weights, no download)."""
    with torch.device("meta"):
        try:
            return build_library_architecture(architecture)
        except UnknownArchitectureError as err:
            raise CheckpointError(str(err)) from err


def _load_file_state_dict(path: Path) -> CheckpointReader:
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return SafetensorsReader(path)
    if suffix in PICKLE_SUFFIXES:
        return StateDictReader(path, extract_state_dict(_safe_torch_load(path), path))
    raise CheckpointError(
        f"{path}: unsupported checkpoint format {suffix!r} (use one of {', '.join(CHECKPOINT_SUFFIXES)})"
    )


def open_checkpoint(path: str | Path, *, architecture: str | None = None) -> CheckpointReader:
    """Open a checkpoint for tensor-by-tensor reading.

    Args:
        path: the weights file.
        architecture: optional ``timm:<name>`` / ``torchvision:<name>``; when given, the file must
            load strictly into that architecture and the architecture's state dict is read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    reader = _load_file_state_dict(path)
    if architecture is None:
        return reader
    with reader:
        state = {info.name: reader.get(info.name) for info in reader.tensor_infos()}
    model = build_architecture_on_meta(architecture)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: does not fit architecture {architecture!r}: {str(err).splitlines()[0]} ..."
        ) from err
    return StateDictReader(path, model.state_dict())
