"""The STAND-IN world: quick, deterministic, cached, complete, and its table measured honestly.

It is the pipeline tests' world (a scale of the one world generator, :mod:`worlds`): checkpoints
in several formats, a probe-measured performance table a pipeline reads as a user's own, and a
random open_clip encoder loaded from local files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import ml_core.images  # noqa: F401 - imported here so build timings exclude open_clip's import
from ml_core.artifacts import sha256_file
from ml_core.ground_truth import load_performance_table, to_model_input
from ml_core.images import ImageEncoderSpec
from ml_core.weights import (
    SMALL_ARCHITECTURES,
    ModelCard,
    UnknownArchitectureError,
    build_architecture,
    count_parameters,
    open_checkpoint,
)
from worlds import STANDIN, World, WorldManifest, build_world, nearest_class_mean_accuracy
from worlds.world import SPLITS, split_sizes, target_tasks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(standin_world: World) -> World:
    return standin_world


@pytest.fixture(scope="module")
def cards(world: World) -> dict[str, ModelCard]:
    return {name: ModelCard.read(world.zoo_dir / f"{name}.json") for name in world.model_names}


# ----------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("name", sorted(SMALL_ARCHITECTURES))
def test_architecture_shapes_and_size(name: str) -> None:
    model = build_architecture(name, num_classes=5).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (3, model.num_features)
        assert torch.equal(model.forward_head(features, pre_logits=True), features)
        assert torch.allclose(model.forward_head(features), model(x), atol=1e-6)
    assert model(x).shape == (3, 5)
    assert 1_000 < count_parameters(model) < 100_000
    model.reset_classifier(2)
    assert model(x).shape == (3, 2)


def test_architecture_registry() -> None:
    int_buffers = [n for n, b in build_architecture("tinyresnet").named_buffers() if not b.is_floating_point()]
    assert int_buffers and all(n.endswith("num_batches_tracked") for n in int_buffers)
    assert not list(build_architecture("smallcnn").buffers())  # no BatchNorm there
    with pytest.raises(UnknownArchitectureError, match="resnet9000.*known: depthwisenet, efficientnet_lite0, smallcnn, tinyresnet, tinyvit"):
        build_architecture("resnet9000")


# ----------------------------------------------------------------------------- build, determinism, cache


def test_builds_in_seconds_same_seed_same_bytes_other_seed_differs(world: World, tmp_path: Path) -> None:
    start = time.perf_counter()
    twin = build_world(tmp_path / "twin", scale="standin", seed=0)
    seconds = time.perf_counter() - start
    # ~10 s on an idle 2-core machine; the bound only catches an order-of-magnitude regression.
    assert seconds < 60, f"building the stand-in world took {seconds:.1f} s"
    assert sorted(world.model_names) == sorted(
        f"{arch}_{source}" for arch in STANDIN.architectures for source in STANDIN.sources
    )
    assert len(world.dataset_names) == 4
    first, second = _hashes(world.root), _hashes(twin.root)
    assert first == second  # every file, world.json included (so it holds no absolute path)
    assert len(first) > 150

    other = _hashes(build_world(tmp_path / "other", scale="standin", seed=1).root)
    encoder = {rel for rel in first.keys() | other.keys() if rel.startswith("encoder/")}
    assert other.keys() - encoder == first.keys() - encoder  # same layout (the encoder file names its seed)
    encoder_weights = [{h for rel, h in side.items() if rel in encoder and rel.endswith(".safetensors")}
                       for side in (first, other)]
    assert len(encoder_weights[0]) == 1 and encoder_weights[0] != encoder_weights[1]
    changed = {rel for rel in first.keys() - encoder if first[rel] != other[rel]}
    weights = {rel for rel in first if rel.startswith("zoo/") and rel.endswith((".safetensors", ".pt"))}
    pngs = {rel for rel in first if rel.endswith(".png")}
    assert len(weights) == 6 and weights <= changed  # other weights ...
    assert pngs <= changed  # ... other images ...
    assert "performance.json" in changed and "world.json" in changed


def test_second_call_is_a_cache_hit(world: World) -> None:
    files = sorted(p for p in world.root.rglob("*") if p.is_file())
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    start = time.perf_counter()
    again = build_world(world.root, scale="standin", seed=0)
    assert time.perf_counter() - start < 2.0
    assert again == world  # the encoder spec too, rebuilt from the manifest
    assert sorted(p for p in world.root.rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes


def test_manifest_lists_every_file_relative(world: World) -> None:
    manifest = world.manifest()
    assert isinstance(manifest, WorldManifest)
    assert manifest.standin is True and "STAND-IN" in manifest.description
    assert manifest.seed == 0 and manifest.scale == STANDIN.model_dump(mode="json")
    on_disk = _hashes(world.root)
    del on_disk["world.json"]
    assert manifest.files == on_disk
    for rel in [*manifest.files, manifest.encoder["pretrained"], manifest.encoder["model_config_file"]]:
        assert not Path(rel).is_absolute() and ".." not in Path(rel).parts, rel
    assert str(world.root) not in world.manifest_path.read_text()


def test_encoder_spec_points_at_the_world(world: World) -> None:
    spec = world.encoder_spec
    assert isinstance(spec, ImageEncoderSpec) and spec.kind == "open_clip"
    for value in (spec.pretrained, spec.model_config_file):
        path = Path(value)
        assert path.is_file() and path.parent == world.root / "encoder"


# ----------------------------------------------------------------------------- zoo


def test_zoo_formats_sidecars_and_weights(world: World, cards: dict[str, ModelCard]) -> None:
    files = sorted(p.name for p in world.zoo_dir.iterdir())
    assert files == sorted([f"{n}.json" for n in world.model_names] + [c.weights_file for c in cards.values()])
    assert sorted(c.format for c in cards.values()) == ["pt", "pt"] + ["safetensors"] * 4
    assert {c.architecture for c in cards.values()} == {"smallcnn", "tinyresnet", "depthwisenet"}
    assert {c.source_task for c in cards.values()} == {"shapes", "gratings"}
    assert all(c.source_images is None for c in cards.values())  # the stand-in ships no source samples

    nested = [c for c in cards.values() if c.state_dict_key]
    assert [(c.format, c.state_dict_key) for c in nested] == [("pt", "state_dict")]
    raw = torch.load(world.zoo_dir / nested[0].weights_file, weights_only=True)
    assert set(raw) == {"state_dict"}

    for name, card in cards.items():
        path = world.zoo_dir / card.weights_file
        assert path.stem == name and card.standin is True
        model = build_architecture(card.architecture, num_classes=card.num_classes, **card.arch_kwargs)
        assert card.parameter_count == count_parameters(model) < 100_000
        with open_checkpoint(path) as reader:  # the loader the pipeline uses, nested key included
            state = {info.name: reader.get(info.name) for info in reader.tensor_infos()}
        model.load_state_dict(state, strict=True)  # every tensor, BatchNorm counters included
        fresh = build_architecture(card.architecture, num_classes=card.num_classes, **card.arch_kwargs)
        assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in state.items() if v.is_floating_point())
        if card.format == "safetensors":
            with safe_open(str(path), framework="pt") as handle:
                assert json.loads(handle.metadata()["model_card"])["name"] == name


def test_source_accuracy_recorded_and_above_chance(cards: dict[str, ModelCard]) -> None:
    for name, card in cards.items():
        chance = 1.0 / card.num_classes
        assert chance + 0.1 < card.source_accuracy <= 1.0, f"{name}: {card.source_accuracy:.3f}"


# ----------------------------------------------------------------------------- datasets and table


def test_datasets_are_imagefolder_trees(world: World) -> None:
    from torchvision.datasets import ImageFolder

    assert sorted(p.name for p in world.datasets_dir.iterdir()) == sorted(world.dataset_names)
    for name, task in target_tasks(STANDIN).items():
        folder_splits = sorted(p.name for p in (world.datasets_dir / name).iterdir() if p.is_dir())
        assert folder_splits == sorted(SPLITS)
        for split, n in split_sizes(task, STANDIN).items():
            folder = ImageFolder(str(world.datasets_dir / name / split))
            assert folder.classes == sorted(task.classes)
            counts = np.bincount(folder.targets, minlength=len(folder.classes))
            assert set(counts) == {n}, f"{name}/{split}: {counts}"
            image, _ = folder[0]
            assert image.mode == "RGB" and image.size == (32, 32)


def test_performance_table_is_complete_and_measured(world: World, cards: dict[str, ModelCard]) -> None:
    table = json.loads(world.table_path.read_text())
    assert sorted(table) == sorted(world.dataset_names)
    accuracies = []
    for rows in table.values():
        assert sorted(r["model_name"] for r in rows) == sorted(world.model_names)
        for row in rows:
            card = cards[row["model_name"]]
            assert (row["model_type"], row["trained_on_dataset"]) == (card.architecture, card.source_task)
            assert 0.0 <= row["accuracy"] <= 1.0
            accuracies.append(row["accuracy"])
    assert np.std(accuracies) > 0.05 and len(set(accuracies)) >= 6  # not a constant table
    loaded = load_performance_table(world.table_path)  # the pipeline's reader accepts it as is
    assert len(loaded.datasets) == 4 and len(loaded.models) == 6

    # Re-measure every entry from the files on disk: weights file + PNGs -> same probe accuracy.
    for dataset, rows in table.items():
        data = {split: _read_split(world.datasets_dir / dataset / split) for split in ("train", "test")}
        for row in rows:
            card = cards[row["model_name"]]
            model = _load_model(world.zoo_dir, card)
            with torch.inference_mode():
                feats = {s: model.forward_features(to_model_input(data[s][0], card)) for s in data}
            accuracy = nearest_class_mean_accuracy(feats["train"], data["train"][1], feats["test"], data["test"][1])
            assert accuracy == pytest.approx(row["accuracy"], abs=1e-9), (dataset, row["model_name"])


def test_nearest_class_mean_accuracy() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 5
    labels = torch.arange(3).repeat_interleave(10)
    train = centres[labels] + 0.1 * torch.randn(30, 8, generator=g)
    test = centres[labels] + 0.1 * torch.randn(30, 8, generator=g)
    assert nearest_class_mean_accuracy(train, labels, test, labels) == 1.0
    assert nearest_class_mean_accuracy(train, labels, test, (labels + 1) % 3) == 0.0


def _read_split(folder: Path) -> tuple[np.ndarray, torch.Tensor]:
    classes = sorted(p.name for p in folder.iterdir())
    paths = [(k, p) for k, c in enumerate(classes) for p in sorted((folder / c).glob("*.png"))]
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for _, p in paths])
    return images, torch.tensor([k for k, _ in paths])


def _load_model(zoo_dir: Path, card: ModelCard) -> torch.nn.Module:
    model = build_architecture(card.architecture, num_classes=card.num_classes, **card.arch_kwargs)
    with open_checkpoint(zoo_dir / card.weights_file) as reader:
        model.load_state_dict({i.name: reader.get(i.name) for i in reader.tensor_infos()})
    return model.eval()
