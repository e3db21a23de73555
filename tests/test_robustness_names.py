"""Hostile names: partition keys are safe and unique, and no path ever leaves the artifact root.

Extends tests/test_storage_and_names.py (a handful of names, one unsafe segment refused, zoo key
clash): here many more names, folder names from the catalog, crafted key collisions, names from a
zoo manifest materialized for real, and partition keys added by hand to the Dagster instance.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
import torch
from dagster import DagsterInstance, asset
from safetensors.torch import save_file

from assets.shared.artifacts import ArtifactRef, materialize_cached
from assets.model_parameters import model_parameters
from assets.shared.partitions import models_partitions
from ml_core.artifacts import MAX_KEY_LENGTH, is_safe_key, partition_key
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import CatalogError, discover_datasets
from resources.model_zoo import ZooError, discover_zoo
from tests.test_robustness_helpers import (
    failure_text,
    materialize_partition,
    metadata_of,
    store_resources,
    zoo_resources,
)

HOSTILE_NAMES = [
    "My Model", "my model", "MY MODEL", "my-model", "my_model", "my--model", " my model ", "my\tmodel",
    "../../etc/passwd", "..", ".", "...", "/", "\\", "a/b", "a\\b", "/abs/path", "C:\\Windows\\x", "~/x", "$HOME",
    "modèle é", "modele e", "Ｍｙ Ｍｏｄｅｌ", "模型", "🚀", "🚀🚀", "\u202eevil\u202c", "a\x00b", "a\nb", "name;rm -rf /",
    "-leading-dash", "_leading_underscore", "CON", "nul", "x" * 64, "x" * 65, "x" * 300, "é" * 300,
    "a" + "-" * 100 + "b", "resnet50", "ResNet50", "resnet50.", "resnet50 ",
]


def test_hostile_names_get_safe_unique_stable_keys():
    keys = [partition_key(name) for name in HOSTILE_NAMES]
    assert len(set(keys)) == len(keys), "two distinct names share a key"
    for name, key in zip(HOSTILE_NAMES, keys, strict=True):
        assert is_safe_key(key) and len(key) <= MAX_KEY_LENGTH, (name, key)
        assert key not in (".", "..") and "/" not in key and "\\" not in key and not key.startswith(("-", "_"))
        assert key == unicodedata.normalize("NFC", key) and key.isascii()
        assert partition_key(name) == key  # stable
    assert partition_key("x" * 64) == "x" * 64 and partition_key("x" * 65) != "x" * 65
    assert partition_key("resnet50") == "resnet50"


@pytest.mark.parametrize("empty", ["", " ", "\t\n"])
def test_blank_names_are_refused(empty):
    with pytest.raises(ValueError, match="empty name"):
        partition_key(empty)


def test_catalog_folder_names_become_safe_keys_and_clashes_are_refused(tmp_path):
    names = ["My Data ✓ (v2)", "-dash", " leading space", "données", "a\nb", "x" * 200, "plain"]
    for name in [*names, "...", ".hidden"]:  # names starting with a dot are hidden: ignored
        (tmp_path / name / "train" / "c").mkdir(parents=True)
    entries = discover_datasets(tmp_path)
    assert sorted(e.name for e in entries) == sorted(names)
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    for e in entries:
        path = Path(store.artifact_dir("dataset_tokens", e.key, "0" * 32).path).resolve()
        assert path.is_relative_to((tmp_path / "artifacts").resolve())
    # a folder literally named like another's hashed key
    (tmp_path / partition_key("My Data ✓ (v2)") / "train").mkdir(parents=True)
    with pytest.raises(CatalogError, match="share the partition key"):
        discover_datasets(tmp_path)


def test_zoo_names_from_files_and_manifest(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for stem in ("My Model", "modèle é", "a\nb", "._My Model"):  # the last: macOS AppleDouble junk
        save_file({"w": torch.zeros(2)}, zoo / f"{stem}.safetensors")
    (zoo / "._My Model.safetensors").write_bytes(b"\x00\x05\x16\x07 resource fork")
    manifest = zoo / "zoo.json"
    manifest.write_text(json.dumps({"models": [{"name": "../../escape", "path": "My Model.safetensors"}]}))
    entries = discover_zoo(zoo, manifest)
    assert sorted(e.name for e in entries) == sorted(["My Model", "modèle é", "a\nb", "../../escape"])
    assert all(is_safe_key(e.key) for e in entries)
    manifest.write_text(json.dumps({"models": [{"name": "", "path": "x.pt"}]}))
    with pytest.raises(ZooError, match="non-empty string"):
        discover_zoo(zoo, manifest)
    manifest.write_text(json.dumps({"models": [{"name": partition_key("My Model"), "path": "x.pt"}]}))
    with pytest.raises(ZooError, match="share the key"):
        discover_zoo(zoo, manifest)


def _outside(tmp_path: Path, root: Path) -> set[Path]:
    return {p for p in tmp_path.rglob("*") if not p.is_relative_to(root)}


def test_materialized_hostile_names_stay_under_the_artifact_root(tmp_path):
    zoo, artifacts = tmp_path / "zoo", tmp_path / "artifacts"
    zoo.mkdir()
    save_file({"w": torch.randn(5)}, zoo / "weights.safetensors")
    manifest = zoo / "zoo.json"
    hostile = ["../../escape", "a/b/../../c", "/abs/path", "..", "名字 ✓"]
    manifest.write_text(json.dumps({"models": [{"name": n, "path": "weights.safetensors"} for n in hostile]}))
    resources = zoo_resources(zoo, artifacts, manifest)
    instance = DagsterInstance.ephemeral()
    before = _outside(tmp_path, artifacts)
    keys = {e.name: e.key for e in discover_zoo(zoo, manifest)}
    for name in hostile:
        result = materialize_partition(model_parameters, keys[name], resources, instance)
        assert result.success, failure_text(result)
        path = Path(metadata_of(result)["path"]).resolve()
        assert path.is_relative_to(artifacts.resolve()) and path.parent.name == keys[name]
        assert metadata_of(result)["model"] == name  # the user's name is kept for display
    assert _outside(tmp_path, artifacts) == before  # nothing was created outside the root
    assert all(is_safe_key(p.name) or p.name in ("_refs", "_fingerprints") for p in artifacts.iterdir())


@asset(partitions_def=models_partitions, io_manager_key="io_manager")
def probe_store(context, store: ArtifactStore):
    def build(directory):
        (directory / "data.txt").write_text("x")
        return "content", {}

    return materialize_cached(store, asset="probe_store", partition=context.partition_key, code_version="1",
                              config={}, inputs={}, build=build, log=context.log).ref


@asset(partitions_def=models_partitions, io_manager_key="io_manager")
def probe_refs(context):
    return ArtifactRef("probe_refs", "safe", "0" * 32, "content")


@pytest.mark.parametrize("key", ["../../escape", "a/b", "/abs", "..", "UPPER", "x" * 65, "with space"])
def test_partition_keys_added_by_hand_never_become_paths(tmp_path, key):
    artifacts = tmp_path / "root" / "artifacts"
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    save_file({"w": torch.zeros(2)}, zoo / "ok.safetensors")
    resources = zoo_resources(zoo, artifacts)
    instance = DagsterInstance.ephemeral()
    before = _outside(tmp_path, artifacts)

    result = materialize_partition(model_parameters, key, resources, instance)  # the real asset
    assert not result.success and "is not in the zoo" in failure_text(result)
    for probe, where in ((probe_store, "artifact store"), (probe_refs, "IO manager")):
        result = materialize_partition(probe, key, store_resources(artifacts), instance)
        assert not result.success, where
        assert "unsafe partition key" in failure_text(result), where
    assert _outside(tmp_path, artifacts) == before
    assert not artifacts.exists() or not [p for p in artifacts.rglob("*") if p.is_file()]

    ok = materialize_partition(probe_store, "fine-key", store_resources(artifacts), instance)
    assert ok.success  # the same assets work with a safe key


def test_a_tampered_reference_cannot_point_outside_the_root(tmp_path):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    for field, value in (("asset", "../x"), ("partition", "../../x"), ("cache_key", "../../../etc")):
        ref = ArtifactRef(**({"asset": "a", "partition": "p", "cache_key": "0" * 32, "content_hash": "h"} | {field: value}))
        with pytest.raises(ValueError, match="unsafe"):
            ref.directory(store)
