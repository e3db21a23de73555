"""Read checkpoints tensor by tensor, without ever unpickling untrusted code.

Supported sources:

* ``.safetensors``: read lazily with ``safetensors.safe_open`` (one tensor in memory at a time);
* ``.pt`` / ``.pth`` / ``.bin``: ``torch.load(weights_only=True, mmap=True)``; a state dict, or a
  dict holding one under a usual key (``state_dict``, ``model``, ...), or nested dicts of tensors
  (flattened with dotted names). A pickle that holds anything but tensors and plain containers
  is refused before any of its code can run;
* an architecture name (``timm:resnet18``, ``torchvision:resnet18``) plus a local weights file:
  the network is built on the ``meta`` device (no memory, no download), the weights are loaded
  into it strictly (so a file that does not fit the architecture is an error), and its state
  dict is read.

Tensors come out in one stable order (natural sort of their names), so the same weights saved
in two formats flatten to the same chunks.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

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
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
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


class SafetensorsReader(CheckpointReader):
    """Lazy reader: only the tensor asked for is read from disk."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._file = safe_open(str(self.path), framework="pt", device="cpu")
            names = list(self._file.keys())
            infos = []
            for name in names:
                sl = self._file.get_slice(name)
                dtype_name = sl.get_dtype()
                dtype = _SAFETENSORS_DTYPES.get(dtype_name)
                if dtype is None:
                    dtype = getattr(torch, dtype_name.lower(), None) or torch.uint8
                infos.append(TensorInfo(name, tuple(int(s) for s in sl.get_shape()), dtype))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{self.path}: not a readable safetensors file ({err})") from err
        self._infos = sorted(infos, key=lambda i: natural_key(i.name))

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def get(self, name: str) -> torch.Tensor:
        try:
            return self._file.get_tensor(name)
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{self.path}: tensor {name!r} is unreadable ({err})") from err


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
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({err})") from err


def _collect_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _collect_tensors(value, f"{prefix}.{key}" if prefix else str(key), out, depth + 1)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _collect_tensors(value, f"{prefix}.{i}" if prefix else str(i), out, depth + 1)


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside a loaded checkpoint object.

    A flat mapping of tensors is taken as is; otherwise the first usual key
    (:data:`USUAL_STATE_DICT_KEYS`) holding tensors is used; otherwise every tensor found in the
    nested structure, named by its dotted path. A common ``module.`` prefix (DataParallel) is
    stripped.
    """
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            tensors = {str(k): v for k, v in obj.items()}
        else:
            tensors = {}
            for key in USUAL_STATE_DICT_KEYS:
                if key in obj:
                    _collect_tensors(obj[key], "", tensors)
                    if tensors:
                        logger.debug("%s: state dict found under key %r", path, key)
                        break
            if not tensors:
                _collect_tensors(obj, "", tensors)
    else:
        tensors = {}
        _collect_tensors(obj, "", tensors)
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (type {type(obj).__name__})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def build_architecture_on_meta(architecture: str) -> torch.nn.Module:
    """Build ``timm:<name>`` or ``torchvision:<name>`` on the meta device (no weights, no download)."""
    library, _, name = architecture.partition(":")
    if not name:
        raise CheckpointError(
            f"architecture {architecture!r}: expected 'timm:<name>' or 'torchvision:<name>'"
        )
    with torch.device("meta"):
        if library == "timm":
            import timm

            try:
                return timm.create_model(name, pretrained=False)
            except RuntimeError as err:
                raise CheckpointError(f"architecture {architecture!r}: {err}") from err
        if library == "torchvision":
            import torchvision

            try:
                return torchvision.models.get_model(name, weights=None)
            except ValueError as err:
                raise CheckpointError(f"architecture {architecture!r}: {err}") from err
    raise CheckpointError(f"architecture {architecture!r}: unknown library {library!r} (timm, torchvision)")


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
