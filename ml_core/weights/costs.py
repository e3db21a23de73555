"""What one checkpoint of the zoo costs to run: parameters, bytes on disk, FLOPs and CPU latency per image.

:func:`model_costs` rebuilds the network a model card names (:func:`~ml_core.weights.build_network`: a
zoo architecture, or ``timm:<name>`` / ``torchvision:<name>``), loads the checkpoint into it strictly
(safetensors, or ``torch.load(weights_only=True)``: never unpickled) and measures, on one input
resolution:

* ``params``: the network's parameter values (``nn.Parameter``; buffers such as BatchNorm statistics
  are not parameters);
* ``size_bytes``: the checkpoint file's size on disk;
* ``flops``: FLOPs of one forward pass of one image, the total of :class:`torch.utils.flop_counter.
  FlopCounterMode`. That counter counts matrix products and convolutions only, each multiply-add as
  **2 FLOPs** (so ``flops`` = 2 x multiply-adds, the "GMACs" of timm's tables doubled); elementwise
  work (activations, normalisation, pooling, residual adds) is not counted;
* ``latency_ms_b1`` / ``latency_ms_b32``: CPU wall time per image, in milliseconds, of a forward pass
  under ``torch.inference_mode`` at batch 1 and at batch 32 (the batch's time / 32): the median of
  ``repeats`` timed passes after ``warmup`` untimed ones, on ``threads`` intra-op threads (recorded,
  with the machine: :func:`describe_machine`).

A checkpoint whose network cannot be built (no architecture in its card, an unknown one, weights that
do not load into it strictly) gets ``size_bytes`` and a parameter count taken from its stored tensors
(every floating-point value, BatchNorm statistics included: ``params_source = "checkpoint tensors"``),
no FLOPs nor latency, and ``reason`` saying why. A file that cannot be read at all is a
:class:`~ml_core.weights.CheckpointError`, naming it.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ml_core.weights.architectures import UnknownArchitectureError, build_network, count_parameters
from ml_core.weights.checkpoints import CheckpointError, open_checkpoint

#: the batch sizes latency is measured at (per image), and the columns they fill
LATENCY_BATCHES = {"latency_ms_b1": 1, "latency_ms_b32": 32}


@dataclass(frozen=True)
class CostConfig:
    """How costs are measured.

    Args:
        resolution: input side in pixels (square RGB images); 0: the model card's ``input_size``.
        threads: torch intra-op threads while timing (fixed, so figures compare across models).
        warmup: untimed forward passes before timing, per batch size.
        repeats: timed forward passes per batch size; the median is reported.
    """

    resolution: int = 0
    threads: int = 1
    warmup: int = 2
    repeats: int = 7


@dataclass(frozen=True)
class ModelCosts:
    """The costs of one checkpoint (see the module docstring for each field's meaning)."""

    params: int
    size_bytes: int
    params_source: str  # "network" (nn.Parameter values) or "checkpoint tensors" (every stored float)
    architecture: str | None = None
    resolution: int | None = None
    flops: int | None = None
    latency_ms_b1: float | None = None
    latency_ms_b32: float | None = None
    threads: int | None = None
    repeats: int | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why the network could not be built (then no FLOPs, no latency)

    @property
    def instantiated(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCosts:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})

    def columns(self) -> dict[str, float | None]:
        """The figures a recommendation table shows: ``params``, ``size_mb`` (10^6 bytes), ``gflops``
        (10^9 FLOPs per image), ``latency_ms_b1``, ``latency_ms_b32``; None where unknown."""
        return {
            "params": float(self.params),
            "size_mb": self.size_bytes / 1e6,
            "gflops": None if self.flops is None else self.flops / 1e9,
            "latency_ms_b1": self.latency_ms_b1,
            "latency_ms_b32": self.latency_ms_b32,
        }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``, else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def describe_machine(threads: int) -> dict[str, Any]:
    """What a latency figure depends on: CPU model, logical CPUs, torch threads and torch's version."""
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": int(threads),
            "torch": torch.__version__, "arch": platform.machine()}


def machine_label(machine: dict[str, Any]) -> str:
    """One line naming the machine of :func:`describe_machine`."""
    return (f"{machine.get('cpu', '?')} ({machine.get('logical_cpus', '?')} logical CPUs), "
            f"{machine.get('torch_threads', '?')} torch thread(s), torch {machine.get('torch', '?')}")


def count_flops(model: torch.nn.Module, images: torch.Tensor) -> int:
    """FLOPs of ``model(images)`` counted by ``FlopCounterMode`` (2 per multiply-add; matmuls and
    convolutions only), for the whole batch."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(images)
    return int(counter.get_total_flops())


def median_seconds(run: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_latency(model: torch.nn.Module, resolution: int, config: CostConfig) -> dict[str, float]:
    """``{column: milliseconds per image}`` for each of :data:`LATENCY_BATCHES` (see the module docstring)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    generator = torch.Generator().manual_seed(0)
    out = {}
    try:
        with torch.inference_mode():
            for column, batch in LATENCY_BATCHES.items():
                images = torch.randn(batch, 3, resolution, resolution, generator=generator)
                seconds = median_seconds(lambda images=images: model(images), config.warmup, config.repeats)
                out[column] = 1000.0 * seconds / batch
    finally:
        torch.set_num_threads(previous)
    return out


def stored_float_values(path: Path) -> int:
    """Floating-point values stored in a checkpoint (read from its header / state dict, not its values)."""
    with open_checkpoint(path) as reader:
        return sum(i.numel for i in reader.tensor_infos() if i.dtype.is_floating_point)


def load_network(path: Path, architecture: str, num_classes: int | None = None,
                 arch_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """The network ``architecture`` names, with the checkpoint at ``path`` loaded strictly (eval mode).
    Raises :class:`UnknownArchitectureError` (it cannot be built) or :class:`CheckpointError` (the
    weights do not fit it, or the file is unreadable), each naming the architecture or the file."""
    try:
        model = build_network(architecture, num_classes=num_classes, **(arch_kwargs or {}))
    except (TypeError, ValueError) as err:  # UnknownArchitectureError is a ValueError
        raise UnknownArchitectureError(f"cannot build architecture {architecture!r}: {err}") from err
    with open_checkpoint(path) as reader:
        state = {info.name: reader.get(info.name) for info in reader.tensor_infos()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: does not fit architecture {architecture!r}: {str(err).splitlines()[0]}") from err
    return model.eval()


def model_costs(
    path: Path,
    architecture: str | None,
    *,
    num_classes: int | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    input_size: int = 32,
    config: CostConfig = CostConfig(),
) -> ModelCosts:
    """The costs of the checkpoint at ``path`` (see the module docstring). ``architecture``,
    ``num_classes``, ``arch_kwargs`` and ``input_size`` are the model card's; ``config.resolution``
    (if not 0) overrides ``input_size``."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    resolution = config.resolution or input_size
    machine = describe_machine(config.threads)
    if not architecture:
        reason = "its model card names no architecture"
    else:
        try:
            model = load_network(path, architecture, num_classes, arch_kwargs)
        except (UnknownArchitectureError, CheckpointError) as err:
            reason = str(err)
        else:
            previous = torch.get_num_threads()
            torch.set_num_threads(config.threads)
            try:
                flops = count_flops(model, torch.zeros(1, 3, resolution, resolution))
            finally:
                torch.set_num_threads(previous)
            return ModelCosts(
                params=count_parameters(model), size_bytes=size, params_source="network", architecture=architecture,
                resolution=resolution, flops=flops, **measure_latency(model, resolution, config),
                threads=config.threads, repeats=config.repeats, machine=machine,
            )
    return ModelCosts(params=stored_float_values(path), size_bytes=size, params_source="checkpoint tensors",
                      architecture=architecture, machine=machine, reason=reason)
