"""The transfer protocols: what they train, determinism, inputs, and the degenerate-target test."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ml_core.artifacts import folder_content_fingerprint
from ml_core.ground_truth import (
    TransferError,
    TransferProtocol,
    assess_spread,
    cell_key,
    load_split,
    load_zoo_model,
    measure_transfer,
    table_spread,
    transfer_card,
)
from ml_core.weights import ModelCard

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {"epochs": 3, "min_steps": 20}


@pytest.fixture(scope="module")
def world(reduced_world):
    return reduced_world


def _card(world, name: str) -> ModelCard:
    return transfer_card(json.loads((world.zoo_dir / f"{name}.json").read_text()), world.zoo_dir / name)


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    """A trivially separable 2-class dataset: reddish vs bluish noisy 32x32 images."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 20)):
        for k, name in enumerate(("red", "blue")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                base = np.array([200, 40, 40] if k == 0 else [40, 40, 200], np.float64)
                img = np.clip(base + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / name / f"{i}.png")
    return root


def test_finetune_trains_the_head_and_last_block_only(world, colours):
    name = "smallcnn_digits"
    card = _card(world, name)
    model = load_zoo_model(world.zoo_dir / f"{name}.safetensors", card)
    tail = {n for n, p in model.named_parameters() if any(p is q for m in model.tail_modules() for q in m.parameters())}
    train, test = load_split(colours, "train"), load_split(colours, "test", ["blue", "red"])
    result = measure_transfer(model, card, train, test, TransferProtocol(**FAST))
    assert result.accuracy >= 0.9 and result.n_classes == 2 and result.n_test == 40 and result.chance == 0.5
    assert result.steps == 20
    saved = load_file(world.zoo_dir / f"{name}.safetensors")
    after = model.state_dict()
    changed = {k for k in saved if k in after and not k.startswith("head") and not torch.equal(saved[k], after[k])}
    assert changed and changed <= tail  # only last-block tensors moved ...
    frozen = [k for k in saved if not k.startswith("head") and k not in tail]
    assert frozen and all(torch.equal(saved[k], after[k]) for k in frozen)  # ... the trunk did not
    assert after["head.weight"].shape == (2, model.num_features)  # a fresh 2-class head


def test_protocols_are_deterministic_and_the_probe_changes_nothing(world, colours):
    name = "depthwisenet_gratings"
    card = _card(world, name)
    train, test = load_split(colours, "train"), load_split(colours, "test", ["blue", "red"])
    runs = [measure_transfer(load_zoo_model(world.zoo_dir / f"{name}.safetensors", card), card, train, test,
                             TransferProtocol(**FAST)) for _ in range(2)]
    assert runs[0].accuracy == runs[1].accuracy and runs[0].train_accuracy == runs[1].train_accuracy
    model = load_zoo_model(world.zoo_dir / f"{name}.safetensors", card)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probe = measure_transfer(model, card, train, test, TransferProtocol(kind="linear_probe"))
    assert probe.protocol == "linear_probe" and probe.accuracy >= 0.9 and probe.steps == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_efficientnet_cell_resizes_to_its_input_size(world, colours):
    card = _card(world, "efficientnet_lite0_imagenet")
    assert card.input_size == 64 and card.pixel_mean == pytest.approx([0.485, 0.456, 0.406])
    model = load_zoo_model(world.zoo_dir / "efficientnet_lite0_imagenet.safetensors", card)
    result = measure_transfer(model, card, load_split(colours, "train"), load_split(colours, "test", ["blue", "red"]),
                              TransferProtocol(kind="linear_probe"))
    assert result.accuracy >= 0.9


def test_inputs_are_checked_with_the_file_named(world, colours, tmp_path):
    with pytest.raises(TransferError, match=r"nothing\.safetensors: no sidecar with an 'architecture'"):
        transfer_card({}, tmp_path / "nothing.safetensors")
    card = _card(world, "smallcnn_digits")
    wrong = card.model_copy(update={"arch_kwargs": {"width": 8, "depth": 3}})
    with pytest.raises(TransferError, match="smallcnn_digits.safetensors: weights do not fit 'smallcnn'"):
        load_zoo_model(world.zoo_dir / "smallcnn_digits.safetensors", wrong)
    (colours / "extra" / "green").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(colours / "extra" / "green" / "0.png")
    with pytest.raises(TransferError, match=r"extra: classes \['green'\] are not in the train split"):
        load_split(colours, "extra", ["blue", "red"])
    # cards with one float for every channel are accepted too
    legacy = transfer_card({"architecture": "smallcnn", "num_classes": 4, "pixel_mean": 0.5, "pixel_std": 0.25}, tmp_path / "x")
    assert legacy.pixel_mean == [0.5] * 3 and legacy.input_size == 32


def test_cell_key_changes_with_each_input(world, colours):
    card = _card(world, "smallcnn_digits")
    fp = folder_content_fingerprint(colours)
    base = cell_key("sha-a", card, fp, TransferProtocol())
    assert base == cell_key("sha-a", card, fp, TransferProtocol())
    assert len({base, cell_key("sha-b", card, fp, TransferProtocol()), cell_key("sha-a", card, "other", TransferProtocol()),
                cell_key("sha-a", card, fp, TransferProtocol(lr=1e-3))}) == 4
    target = colours / "test" / "red" / "0.png"
    original = target.read_bytes()
    target.write_bytes(original)  # same bytes, new mtime: same content fingerprint
    assert folder_content_fingerprint(colours) == fp


@pytest.mark.parametrize(
    ("accuracies", "chance", "reason"),
    [
        ([0.52, 0.49, 0.55, 0.5], 0.5, "at chance"),
        ([0.99, 1.0, 0.985, 0.995], 0.25, "saturated"),
        ([0.71, 0.72, 0.705, 0.715], 0.25, "tied"),
        ([0.9, 0.6, 0.75, 0.4], 0.25, None),
    ],
)
def test_assess_spread(accuracies, chance, reason):
    report = assess_spread(accuracies, chance=chance, n_test=520)
    assert report.degenerate is (reason is not None)
    assert (report.reason or "").startswith(reason or "")
    assert report.tolerance == pytest.approx(max(0.02, 2.5 * math.sqrt(report.mean * (1 - report.mean) / 520)))


def test_table_spread_counts_best_models_and_the_cost_of_one_choice():
    table = {"a": {"m1": 0.9, "m2": 0.5, "m3": 0.7}, "b": {"m1": 0.4, "m2": 0.8, "m3": 0.7}, "c": {"m1": 0.6, "m2": 0.6, "m3": 0.65}}
    s = table_spread(table)
    assert s.best_models == {"a": "m1", "b": "m2", "c": "m3"} and s.n_distinct_best == 3
    assert s.overall_best == "m3"  # mean 0.683 beats 0.633 and 0.633
    assert s.regret_of_overall_best_mean == pytest.approx((0.2 + 0.1 + 0.0) / 3)
    assert s.regret_of_overall_best_max == pytest.approx(0.2)
