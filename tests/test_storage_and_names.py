"""Atomic publishing (local and memory://), partition keys, zoo and catalog discovery."""

import json

import pytest
import torch
from safetensors.torch import save_file
from upath import UPath

from ml_core.artifacts import is_safe_key, partition_key, read_manifest, staged_directory, write_manifest
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import discover_datasets
from resources.model_zoo import ZooError, discover_zoo


@pytest.mark.parametrize("root", ["local", "memory"])
def test_staged_directory_publishes_only_complete_artifacts(tmp_path, root):
    base = UPath(tmp_path) if root == "local" else UPath("memory://staged-test")
    final = base / "asset" / "key"
    with pytest.raises(RuntimeError, match="boom"), staged_directory(final) as tmp:
        (tmp / "data.bin").write_bytes(b"half")
        raise RuntimeError("boom")
    assert not final.exists() and read_manifest(final) is None
    assert not [p for p in (base / "asset").iterdir()]  # the temporary directory is gone too
    with pytest.raises(RuntimeError, match="no manifest"), staged_directory(final) as tmp:
        (tmp / "data.bin").write_bytes(b"no manifest")
    with staged_directory(final) as tmp:
        (tmp / "data.bin").write_bytes(b"full")
        write_manifest(tmp, {"content_hash": "abc"})
    assert (final / "data.bin").read_bytes() == b"full"
    assert read_manifest(final) == {"content_hash": "abc"}
    # a second publisher of the same key keeps the first copy
    with staged_directory(final) as tmp:
        (tmp / "data.bin").write_bytes(b"other")
        write_manifest(tmp, {"content_hash": "abc"})
    assert (final / "data.bin").read_bytes() == b"full"


def test_partition_keys_are_safe_stable_and_unique():
    names = ["resnet50", "ResNet 50", "resnet-50", "../../etc/passwd", "a/b", "modèle é", "x" * 300, "My Model", "my model"]
    keys = [partition_key(n) for n in names]
    assert len(set(keys)) == len(keys)
    assert all(is_safe_key(k) and "/" not in k and ".." not in k for k in keys)
    assert partition_key("resnet50") == "resnet50"  # safe names are their own key
    assert partition_key("My Model") == partition_key("My Model")
    with pytest.raises(ValueError):
        partition_key("  ")


def test_artifact_store_refuses_unsafe_segments(tmp_path):
    store = ArtifactStore(root=str(tmp_path))
    with pytest.raises(ValueError, match="unsafe"):
        store.artifact_dir("model_parameters", "../escape", "k")
    assert store.artifact_dir("model_parameters", None, "k") == UPath(tmp_path) / "model_parameters" / "_" / "k"


def test_zoo_discovery_names_keys_sidecars_and_manifest(tmp_path):
    save_file({"w": torch.zeros(2)}, tmp_path / "alpha.safetensors")
    torch.save({"w": torch.zeros(2)}, tmp_path / "Beta Model.pt")
    (tmp_path / "alpha.json").write_text(json.dumps({"source_task": "shapes"}))
    (tmp_path / "notes.txt").write_text("ignored")
    manifest = tmp_path / "zoo.json"
    manifest.write_text(json.dumps({"models": [{"name": "tv_r18", "path": "r18.pth", "architecture": "torchvision:resnet18"}]}))
    entries = discover_zoo(tmp_path, manifest)
    by_name = {e.name: e for e in entries}
    assert set(by_name) == {"alpha", "Beta Model", "tv_r18"}
    assert by_name["alpha"].metadata == {"source_task": "shapes"}
    assert by_name["Beta Model"].key.startswith("beta-model-")
    assert by_name["tv_r18"].architecture == "torchvision:resnet18"
    with pytest.raises(ZooError, match="not found"):
        discover_zoo(tmp_path / "missing")


def test_catalog_finds_imagefolder_datasets_with_cards(tmp_path):
    (tmp_path / "cars" / "train" / "sedan").mkdir(parents=True)
    (tmp_path / "cars" / "dataset.json").write_text(json.dumps({"family": "vehicles"}))
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden" / "train").mkdir(parents=True)
    entries = discover_datasets(tmp_path)
    assert [e.name for e in entries] == ["cars"] and entries[0].family == "vehicles"
