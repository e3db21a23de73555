"""A generated "fixture world": a STAND-IN zoo, datasets, performance table and image encoder.

This is NOT the real demo. It is a small world generated in a few seconds on a CPU, for the
tests and the first run of the pipeline:

* ``zoo/``: 6 models, 3 architectures (:mod:`ml_core.zoo_architectures`) x 2 source tasks
  (``shapes``: filled coloured shapes; ``gratings``: oriented stripes), each pre-trained for a few
  epochs on its source task (generated in memory, never written), so the weights are not pure
  init. 4 are ``.safetensors``, 2 are ``.pt`` (one a flat state dict, one ``{"state_dict": sd}``);
  each has a sidecar ``<name>.json`` (:class:`ZooModelCard`).
* ``datasets/``: 4 ImageFolder datasets ``<dataset>/<split>/<class>/<image>.png`` (splits
  train / val / test), drawn procedurally, some close to a source task and some far from both.
* ``performance.json``: ``{dataset: [{model_name, model_type, accuracy, trained_on_dataset}]}``.
  Accuracy is a CHEAP PROBE, not fine-tuning: the model's ``forward_features`` on the dataset's
  train images, a nearest-class-mean classifier on them, its accuracy on the test images.
* ``encoder/``: a tiny random open_clip model (:func:`ml_core.image_encoder.write_random_open_clip_standin`).
* ``world.json`` (:class:`WorldManifest`), written LAST: sha256 of every file (paths relative to
  the root), the seed and the build parameters. A root whose files all match it is reused as is.

Same seed -> identical bytes in every file (checked across processes; torch runs on one thread
during the build, but float kernels may still differ across CPU types and torch builds). Every
random draw comes from a generator seeded by (seed, purpose, name); torch's global generator is
forked and restored, so the build neither depends on nor changes global random state.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ml_core.performance_table import PerformanceRecord
from ml_core.storage import first_changed_file, read_json, read_valid_manifest, sha256_file, stable_json, write_json
from ml_core.zoo_architectures import build_architecture, count_parameters

logger = logging.getLogger(__name__)

__all__ = [
    "DATASET_TASKS",
    "SOURCE_TASKS",
    "SPLITS",
    "FixtureWorld",
    "FixtureWorldError",
    "WorldManifest",
    "ZooModelCard",
    "build_fixture_world",
    "nearest_class_mean_accuracy",
]

WORLD_MANIFEST_NAME = "world.json"
WORLD_FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
DESCRIPTION = (
    "STAND-IN fixture world: a small generated zoo (3 tiny architectures x 2 generated source tasks, "
    "a few epochs of pre-training each), 4 procedurally drawn ImageFolder datasets, a performance "
    "table measured by a nearest-class-mean probe on frozen features (not fine-tuning) and a random "
    "tiny open_clip encoder. For tests and the first demo only; not real models or data."
)
# Children of the root that a build owns (removed before a rebuild).
_OWNED = ("zoo", "datasets", "encoder", "performance.json")

# Pixel normalisation of every network in the world: x = (pixel / 255 - 0.5) / 0.25.
_PIXEL_MEAN, _PIXEL_STD = 0.5, 0.25


class FixtureWorldError(ValueError):
    """The fixture world could not be built or read; the message names the file."""


# ----------------------------------------------------------------------------- on-disk formats


class ZooModelCard(BaseModel):
    """Sidecar ``zoo/<name>.json`` of one stand-in model."""

    model_config = ConfigDict(extra="forbid")

    name: str
    architecture: str
    arch_kwargs: dict[str, Any]
    num_classes: int
    source_task: str
    source_accuracy: float
    parameter_count: int
    weights_file: str  # file name beside the sidecar
    format: Literal["safetensors", "pt"]
    state_dict_key: str | None = None  # ``"state_dict"`` when the .pt nests it
    pixel_mean: float = _PIXEL_MEAN
    pixel_std: float = _PIXEL_STD
    standin: bool = True


class WorldManifest(BaseModel):
    """``world.json``: what was built, from what, and the sha256 of every file."""

    model_config = ConfigDict(extra="forbid")

    format_version: int
    standin: bool
    description: str
    seed: int
    n_images_per_class: int
    image_size: int
    model_names: list[str]
    dataset_names: list[str]
    encoder: dict[str, Any]  # ImageEncoderSpec fields; its files relative to the root
    files: dict[str, str]  # posix path relative to the root -> sha256


@dataclass(frozen=True)
class FixtureWorld:
    """Where the parts of a built world are (all under ``root``)."""

    root: Path
    zoo_dir: Path
    datasets_dir: Path
    table_path: Path
    encoder_spec: Any  # ml_core.image_encoder.ImageEncoderSpec
    model_names: tuple[str, ...]
    dataset_names: tuple[str, ...]

    @property
    def manifest_path(self) -> Path:
        return self.root / WORLD_MANIFEST_NAME

    def manifest(self) -> WorldManifest:
        return WorldManifest.model_validate(read_json(self.manifest_path))


# ----------------------------------------------------------------------------- seeding


def _seed_int(*parts: Any) -> int:
    """A stable 63-bit seed from JSON-able parts (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(stable_json(list(parts)).encode()).digest()[:8], "little") >> 1


def _rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(_seed_int(*parts))


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: these nets are so small that a second thread
    costs more than it gives (3x slower on a busy 2-core machine), and one thread keeps the
    float results independent of the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _torch_seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed torch's global generator for module init inside the block, then restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- image generators
# Each draws one image: (rng, class index, size) -> uint8 array (size, size, 3).

DrawFn = Callable[[np.random.Generator, int, int], np.ndarray]


def _add_noise(rng: np.random.Generator, img: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    noisy = img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _contrasting_colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    bg = rng.integers(0, 256, 3)
    fg = (bg + 128 + rng.integers(-48, 49, 3)) % 256  # about half the range away, per channel
    return tuple(int(v) for v in bg), tuple(int(v) for v in fg)


_POLYGONS = {  # unit-radius vertices, rotated at random when drawn
    "square": [(np.cos(a), np.sin(a)) for a in np.pi / 4 + np.arange(4) * np.pi / 2],
    "triangle": [(np.cos(a), np.sin(a)) for a in np.pi / 2 + np.arange(3) * 2 * np.pi / 3],
    "cross": [  # a plus sign
        (0.3, 1), (0.3, 0.3), (1, 0.3), (1, -0.3), (0.3, -0.3), (0.3, -1),
        (-0.3, -1), (-0.3, -0.3), (-1, -0.3), (-1, 0.3), (-0.3, 0.3), (-0.3, 1),
    ],
}  # fmt: skip


_SHAPE_HUES = {"circle": 0.0, "square": 0.33, "triangle": 0.6, "cross": 0.15}  # filled shapes only


def _draw_shape(rng: np.random.Generator, shape: str, size: int, *, filled: bool) -> np.ndarray:
    """A shape on a plain background. Filled shapes are bright on dark, hued by class (jittered);
    outlines take any two contrasting colours, so only the outline tells the class."""
    if filled:
        hue = (_SHAPE_HUES[shape] + rng.uniform(-0.06, 0.06)) % 1.0
        fg_rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0))
        bg_rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0.0, 0.35))
        fg, bg = (tuple(int(round(255 * v)) for v in c) for c in (fg_rgb, bg_rgb))
    else:
        bg, fg = _contrasting_colours(rng)
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    radius = rng.uniform(0.26, 0.4) * size
    cx, cy = rng.uniform(radius + 1, size - radius - 1, 2)
    line = max(1, size // 14)
    if shape == "circle":
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        draw.ellipse(box, fill=fg if filled else None, outline=fg, width=1 if filled else line)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        pts = [(cx + radius * (c * x - s * y), cy + radius * (s * x + c * y)) for x, y in _POLYGONS[shape]]
        draw.polygon(pts, fill=fg if filled else None, outline=fg, width=1 if filled else line)
    return _add_noise(rng, np.asarray(img))


def _grating(rng: np.random.Generator, size: int, theta: float, cycles: float) -> np.ndarray:
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    phase = rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * cycles * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    c1, c2 = (np.asarray(c, dtype=np.float64) for c in _contrasting_colours(rng))
    img = c1 * (1 - wave[..., None]) + c2 * wave[..., None]
    return _add_noise(rng, img)


def _draw_oriented_grating(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    theta = np.deg2rad(45 * k + rng.uniform(-8, 8))  # 0, 45, 90, 135 degrees
    return _grating(rng, size, theta, cycles=rng.uniform(2.5, 5.0))


_STRIPE_CYCLES = (1.5, 3.5, 7.0)


def _draw_stripe_frequency(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    cycles = _STRIPE_CYCLES[k] * rng.uniform(0.85, 1.15)
    return _grating(rng, size, theta=rng.uniform(0, np.pi), cycles=cycles)


_BLOB_HUES = (0.0, 0.16, 0.33, 0.6, 0.83)  # red, yellow, green, blue, magenta


def _draw_colour_blobs(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    bg = np.asarray(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.5), rng.uniform(0.05, 0.3)))
    img = np.broadcast_to(bg * 255, (size, size, 3)).astype(np.float64)
    for _ in range(int(rng.integers(2, 6))):
        hue = (_BLOB_HUES[k] + rng.uniform(-0.04, 0.04)) % 1.0
        colour = np.asarray(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))) * 255
        cx, cy = rng.uniform(0, size, 2)
        sigma = rng.uniform(0.08, 0.2) * size
        alpha = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))[..., None]
        img = img * (1 - alpha) + colour * alpha
    return _add_noise(rng, img, sigma=5.0)


_NOISE_CELLS = (1, 2, 4, 8)  # grain size in pixels


def _draw_noise_texture(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    low = max(1, size // _NOISE_CELLS[k])
    grain = (rng.uniform(0, 255, (low, low))).astype(np.uint8)
    field = np.asarray(Image.fromarray(grain).resize((size, size), Image.Resampling.BILINEAR), np.float64) / 255
    c1, c2 = (np.asarray(c, dtype=np.float64) for c in _contrasting_colours(rng))
    img = c1 * (1 - field[..., None]) + c2 * field[..., None]
    return _add_noise(rng, img, sigma=3.0)


@dataclass(frozen=True)
class ImageTask:
    """A generated classification task: class names and how to draw an image of class ``k``."""

    name: str
    classes: tuple[str, ...]
    draw: DrawFn

    def sample(self, seed: int, split: str, n_per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Images ``(N, size, size, 3)`` uint8 and labels ``(N,)`` int64, class by class."""
        rng = _rng("images", seed, self.name, split)
        images = [self.draw(rng, k, size) for k in range(len(self.classes)) for _ in range(n_per_class)]
        labels = np.repeat(np.arange(len(self.classes), dtype=np.int64), n_per_class)
        return np.stack(images), labels


def _shape_task(name: str, shapes: tuple[str, ...], *, filled: bool) -> ImageTask:
    return ImageTask(name, shapes, lambda rng, k, size: _draw_shape(rng, shapes[k], size, filled=filled))


SOURCE_TASKS: dict[str, ImageTask] = {
    "shapes": _shape_task("shapes", ("circle", "square", "triangle", "cross"), filled=True),
    "gratings": ImageTask("gratings", ("deg000", "deg045", "deg090", "deg135"), _draw_oriented_grating),
}
DATASET_TASKS: dict[str, ImageTask] = {  # near "shapes", near "gratings", then far from both
    "outlined_shapes": _shape_task("outlined_shapes", ("circle", "square", "triangle"), filled=False),
    "stripe_frequency": ImageTask("stripe_frequency", ("wide", "medium", "narrow"), _draw_stripe_frequency),
    "colour_blobs": ImageTask("colour_blobs", ("red", "yellow", "green", "blue", "magenta"), _draw_colour_blobs),
    "noise_textures": ImageTask("noise_textures", ("grain1", "grain2", "grain4", "grain8"), _draw_noise_texture),
}


# ----------------------------------------------------------------------------- the zoo


@dataclass(frozen=True)
class _ZooEntry:
    architecture: str
    arch_kwargs: dict[str, Any]
    source_task: str
    format: Literal["safetensors", "pt"]
    state_dict_key: str | None = None

    @property
    def name(self) -> str:
        return f"{self.architecture}_{self.source_task}"


_ARCH_KWARGS: dict[str, dict[str, Any]] = {
    "smallcnn": {"width": 16, "depth": 3},
    "tinyresnet": {"width": 8, "blocks": [1, 1, 1]},
    "depthwisenet": {"width": 16, "depth": 4},
}
_ZOO: tuple[_ZooEntry, ...] = (
    _ZooEntry("smallcnn", _ARCH_KWARGS["smallcnn"], "shapes", "safetensors"),
    _ZooEntry("smallcnn", _ARCH_KWARGS["smallcnn"], "gratings", "pt"),
    _ZooEntry("tinyresnet", _ARCH_KWARGS["tinyresnet"], "shapes", "safetensors"),
    _ZooEntry("tinyresnet", _ARCH_KWARGS["tinyresnet"], "gratings", "pt", state_dict_key="state_dict"),
    _ZooEntry("depthwisenet", _ARCH_KWARGS["depthwisenet"], "shapes", "safetensors"),
    _ZooEntry("depthwisenet", _ARCH_KWARGS["depthwisenet"], "gratings", "safetensors"),
)
_SOURCE_TRAIN_PER_CLASS = 48
_SOURCE_TEST_PER_CLASS = 32
_PRETRAIN_EPOCHS = 3
_PRETRAIN_BATCH = 16
_PRETRAIN_LR = 0.03
_PRETRAIN_MOMENTUM = 0.9


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> normalised float32 ``(N, 3, H, W)``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - _PIXEL_MEAN) / _PIXEL_STD


def _pretrain(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    generator: torch.Generator,
) -> float:
    """A few epochs of SGD with momentum on the source task; returns top-1 accuracy on its test split.

    The update is written out: building any ``torch.optim`` optimizer imports ``torch._dynamo``
    (about 1.6 s here), longer than all of this training.
    """
    x, y = train
    params = [p for p in model.parameters() if p.requires_grad]
    velocity = [torch.zeros_like(p) for p in params]
    model.train()
    for _ in range(_PRETRAIN_EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), _PRETRAIN_BATCH):
            idx = order[start : start + _PRETRAIN_BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g, v in zip(params, grads, velocity, strict=True):
                    v.mul_(_PRETRAIN_MOMENTUM).add_(g)
                    p.add_(v, alpha=-_PRETRAIN_LR)
    model.eval()
    with torch.inference_mode():
        return int((model(test[0]).argmax(1) == test[1]).sum()) / len(test[1])


def _save_model(model: torch.nn.Module, entry: _ZooEntry, card: ZooModelCard, zoo_dir: Path) -> None:
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    path = zoo_dir / card.weights_file
    if entry.format == "safetensors":
        # One metadata key only: safetensors orders several keys differently in each process.
        save_file(state, str(path), metadata={"model_card": stable_json(card.model_dump(mode="json"))})
    else:  # the zip's inner folder is the file stem, so the bytes depend only on the name
        torch.save({entry.state_dict_key: state} if entry.state_dict_key else state, path)
    write_json(zoo_dir / f"{card.name}.json", card.model_dump(mode="json"))


def _build_zoo(zoo_dir: Path, seed: int, image_size: int) -> dict[str, torch.nn.Module]:
    """Pre-train and save the 6 stand-in models; returns them (eval mode) by name."""
    zoo_dir.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, task in SOURCE_TASKS.items():
        x_tr, y_tr = task.sample(seed, "source-train", _SOURCE_TRAIN_PER_CLASS, image_size)
        x_te, y_te = task.sample(seed, "source-test", _SOURCE_TEST_PER_CLASS, image_size)
        sources[name] = ((_to_tensor(x_tr), torch.from_numpy(y_tr)), (_to_tensor(x_te), torch.from_numpy(y_te)))
    models = {}
    for entry in tqdm(_ZOO, desc="stand-in zoo", leave=False):
        task = SOURCE_TASKS[entry.source_task]
        with _torch_seeded(_seed_int("model", seed, entry.name)) as generator:
            model = build_architecture(entry.architecture, num_classes=len(task.classes), **entry.arch_kwargs)
            accuracy = _pretrain(model, *sources[entry.source_task], generator=generator)
        card = ZooModelCard(
            name=entry.name,
            architecture=entry.architecture,
            arch_kwargs=dict(entry.arch_kwargs),
            num_classes=len(task.classes),
            source_task=entry.source_task,
            source_accuracy=accuracy,
            parameter_count=count_parameters(model),
            weights_file=f"{entry.name}.{entry.format}",
            format=entry.format,
            state_dict_key=entry.state_dict_key,
        )
        _save_model(model, entry, card, zoo_dir)
        logger.debug("%s: source accuracy %.3f on %s", entry.name, accuracy, entry.source_task)
        models[entry.name] = model
    return models


# ----------------------------------------------------------------------------- datasets and table


def _split_sizes(n_images_per_class: int) -> dict[str, int]:
    """Images per class in each split: ``n`` in train, fewer in val and test."""
    return {
        "train": n_images_per_class,
        "val": max(2, n_images_per_class // 3),
        "test": max(3, n_images_per_class // 2),
    }


def _write_dataset(
    task: ImageTask, root: Path, seed: int, n_images_per_class: int, size: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``root/<split>/<class>/<class>_<i>.png``; returns the images and labels per split."""
    splits = {}
    for split, n in _split_sizes(n_images_per_class).items():
        images, labels = task.sample(seed, split, n, size)
        for k, cls in enumerate(task.classes):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i, img in enumerate(images[labels == k]):
                Image.fromarray(img).save(folder / f"{cls}_{i:04d}.png", format="PNG")
        splits[split] = (images, labels)
    return splits


def nearest_class_mean_accuracy(
    train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, test_labels: torch.Tensor
) -> float:
    """Top-1 accuracy of a nearest-class-mean classifier on frozen features.

    Features ``(N, F)`` are centred by the train mean and L2-normalised; each test row goes to the
    class whose mean train feature has the highest cosine similarity. Labels ``(N,)`` int.
    """
    centre = train_features.mean(0, keepdim=True)
    tr = F.normalize(train_features - centre, dim=1)
    te = F.normalize(test_features - centre, dim=1)
    classes = torch.unique(train_labels)
    means = F.normalize(torch.stack([tr[train_labels == c].mean(0) for c in classes]), dim=1)
    predicted = classes[(te @ means.T).argmax(1)]
    return int((predicted == test_labels).sum()) / len(test_labels)


def _probe_accuracy(model: torch.nn.Module, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """Nearest-class-mean accuracy on test of ``model.forward_features`` fitted on train."""
    model.eval()
    with torch.inference_mode():
        feats = {s: model.forward_features(_to_tensor(data[s][0])) for s in ("train", "test")}
    return nearest_class_mean_accuracy(
        feats["train"], torch.from_numpy(data["train"][1]), feats["test"], torch.from_numpy(data["test"][1])
    )


# ----------------------------------------------------------------------------- the world


def _list_files(root: Path) -> list[Path]:
    files = []
    for child in _OWNED:
        path = root / child
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return files


_ENCODER_PATH_FIELDS = ("pretrained", "model_config_file")


def _write_encoder(root: Path, seed: int) -> tuple[Any, dict[str, Any]]:
    """Write the random open_clip stand-in under ``root/encoder``; returns its spec and the
    spec's fields for the manifest, with its files relative to ``root``."""
    from ml_core.image_encoder import write_random_open_clip_standin  # imports open_clip (~2 s)

    spec = write_random_open_clip_standin(root / "encoder", seed=seed)
    record = dataclasses.asdict(spec)
    for name in _ENCODER_PATH_FIELDS:
        if record[name] is not None:
            path = Path(record[name]).resolve()
            if not path.is_relative_to(root.resolve()):
                raise FixtureWorldError(f"{root}: encoder file {path} was written outside the world")
            record[name] = path.relative_to(root.resolve()).as_posix()
    return spec, record


def _encoder_spec(root: Path, record: dict[str, Any]) -> Any:
    """The :class:`ml_core.image_encoder.ImageEncoderSpec` of a manifest's encoder record."""
    from ml_core.image_encoder import ImageEncoderSpec

    values = dict(record)
    for name in _ENCODER_PATH_FIELDS:
        if values.get(name) is not None:
            values[name] = str(root / values[name])
    return ImageEncoderSpec(**values)


def _cached_world(root: Path, seed: int, n_images_per_class: int, image_size: int) -> WorldManifest | None:
    """The manifest if ``root`` holds this exact world with every file intact, else None."""
    path = root / WORLD_MANIFEST_NAME
    manifest = read_valid_manifest(path, WorldManifest)
    if manifest is None:
        return None
    wanted = (WORLD_FORMAT_VERSION, seed, n_images_per_class, image_size)
    if (manifest.format_version, manifest.seed, manifest.n_images_per_class, manifest.image_size) != wanted:
        logger.info("%s: built with other parameters, rebuilding", path)
        return None
    changed = first_changed_file(root, manifest.files)
    if changed is not None:
        logger.info("%s: missing or changed since the manifest, rebuilding", root / changed)
        return None
    return manifest


def _world(root: Path, manifest: WorldManifest, encoder_spec: Any) -> FixtureWorld:
    return FixtureWorld(
        root=root,
        zoo_dir=root / "zoo",
        datasets_dir=root / "datasets",
        table_path=root / "performance.json",
        encoder_spec=encoder_spec,
        model_names=tuple(manifest.model_names),
        dataset_names=tuple(manifest.dataset_names),
    )


def build_fixture_world(
    root: str | os.PathLike[str], *, seed: int = 0, n_images_per_class: int = 12, image_size: int = 32
) -> FixtureWorld:
    """Generate the stand-in world under ``root`` (or reuse it if already there, intact).

    Args:
        root: a local folder; only ``zoo/``, ``datasets/``, ``encoder/``, ``performance.json``
            and ``world.json`` in it are written (and replaced on a rebuild).
        seed: every random draw derives from it; same seed -> same bytes.
        n_images_per_class: train images per class (val gets ``max(2, n // 3)``, test
            ``max(3, n // 2)``).
        image_size: side of the square RGB images, in pixels.
    """
    root = Path(root)
    if n_images_per_class < 2 or image_size < 8:
        raise FixtureWorldError(f"{root}: need n_images_per_class >= 2 and image_size >= 8, got "
                                f"{n_images_per_class} and {image_size}")
    cached = _cached_world(root, seed, n_images_per_class, image_size)
    if cached is not None:
        logger.info("%s: fixture world already built (seed %d), reusing it", root, seed)
        return _world(root, cached, _encoder_spec(root, cached.encoder))

    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    (root / WORLD_MANIFEST_NAME).unlink(missing_ok=True)  # the old world is invalid from here on
    for child in _OWNED:
        path = root / child
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    with _single_thread():
        models = _build_zoo(root / "zoo", seed, image_size)
        table: dict[str, list[dict[str, Any]]] = {}
        for name, task in tqdm(DATASET_TASKS.items(), desc="stand-in datasets", leave=False):
            data = _write_dataset(task, root / "datasets" / name, seed, n_images_per_class, image_size)
            table[name] = [
                PerformanceRecord(
                    model_name=entry.name,
                    model_type=entry.architecture,
                    accuracy=_probe_accuracy(models[entry.name], data),
                    trained_on_dataset=entry.source_task,
                ).model_dump()
                for entry in _ZOO
            ]
        write_json(root / "performance.json", table)
        encoder_spec, encoder_record = _write_encoder(root, seed)

    manifest = WorldManifest(
        format_version=WORLD_FORMAT_VERSION,
        standin=True,
        description=DESCRIPTION,
        seed=seed,
        n_images_per_class=n_images_per_class,
        image_size=image_size,
        model_names=[entry.name for entry in _ZOO],
        dataset_names=list(DATASET_TASKS),
        encoder=encoder_record,
        files={p.relative_to(root).as_posix(): sha256_file(p) for p in _list_files(root)},
    )
    write_json(root / WORLD_MANIFEST_NAME, manifest.model_dump(mode="json"))  # last: marks it complete
    logger.info("%s: built the stand-in fixture world in %.1f s", root, time.perf_counter() - started)
    return _world(root, manifest, encoder_spec)
