"""Faults: runs killed mid-write, concurrent runs of one partition, leftovers, pointer files.

Extends tests/test_storage_and_names.py (an exception inside a staged write; a second publisher
of the same key): here real processes are killed with SIGKILL in the middle of writing a zarr
artifact and two processes materialize the same partition at once, against one artifact store
and nothing else shared (each has its own Dagster instance, as on two machines).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from dagster import DagsterInstance
from safetensors.torch import save_file
from upath import UPath

import ml_core.artifacts.storage as storage
from assets.shared.artifacts import ArtifactRef
from assets.shared.loaders import PARAMS_DIR
from assets.model_parameters import model_parameters
from ml_core.artifacts import (
    HEARTBEAT_NAME,
    collect_stale_temporaries,
    read_json,
    read_manifest,
    staged_directory,
    write_json,
    write_manifest,
)
from ml_core.weights import read_model_parameters, unflatten
from resources.artifact_store import ArtifactStore
from tests.test_robustness_helpers import failure_text, materialize_partition, metadata_of, temporaries, zoo_resources

REPO = Path(__file__).resolve().parents[1]
KEY = "big"

CHILD = r'''
import json, sys, time
from pathlib import Path
from dagster import DagsterInstance, materialize
from assets.model_parameters import model_parameters
from tests.test_robustness_helpers import QUIET, failure_text, metadata_of, zoo_resources

zoo, artifacts, key, block_rows, ready, go = sys.argv[1:7]
resources = zoo_resources(Path(zoo), Path(artifacts))
instance = DagsterInstance.ephemeral()
instance.add_dynamic_partitions("models", [key])
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.005)
result = materialize([model_parameters], partition_key=key, instance=instance, resources=resources,
                     run_config={**QUIET, "ops": {"model_parameters": {"config": {"block_rows": int(block_rows)}}}},
                     raise_on_error=False)
meta = metadata_of(result) if result.success else {}
print(json.dumps({"success": result.success, "error": failure_text(result),
                  "cache_hit": meta.get("cache_hit"), "content_hash": meta.get("content_hash"), "path": meta.get("path")}))
'''


@pytest.fixture
def big_zoo(tmp_path):
    """A zoo with one 6 M-parameter model: long enough to write that a kill lands mid-write."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    g = torch.Generator().manual_seed(0)
    weights = {f"layer.{i}.weight": torch.randn(1000, 1000, generator=g) for i in range(6)}
    save_file(weights, zoo / f"{KEY}.safetensors")
    (tmp_path / "child.py").write_text(CHILD)
    return zoo, weights


def _start_child(tmp_path: Path, zoo: Path, artifacts: Path, block_rows: int, tag: str) -> tuple[subprocess.Popen, Path, Path]:
    ready, go = tmp_path / f"ready-{tag}", tmp_path / "go"
    env = os.environ | {"PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(zoo), str(artifacts), KEY, str(block_rows), str(ready), str(go)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return process, ready, go


def _wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"child exited early while waiting for {what}: {process.stderr.read()[-3000:]}")
        time.sleep(0.003)
    raise AssertionError(f"timed out waiting for {what}")


def _published(partition_dir: Path) -> list[Path]:
    if not partition_dir.exists():
        return []
    return [p for p in partition_dir.iterdir() if ".tmp-" not in p.name and read_manifest(UPath(p)) is not None]


def _assert_round_trip(artifact_dir: Path, weights: dict[str, torch.Tensor]) -> None:
    stored = read_model_parameters(artifact_dir / PARAMS_DIR)
    back = unflatten(stored.chunks, stored.index)
    assert set(back) == set(weights) and all(torch.equal(back[k], weights[k]) for k in weights)


def test_sigkill_mid_write_leaves_nothing_valid_and_the_rerun_completes(tmp_path, big_zoo):
    zoo, weights = big_zoo
    artifacts = tmp_path / "artifacts"
    partition_dir = artifacts / "model_parameters" / KEY
    process, ready, go = _start_child(tmp_path, zoo, artifacts, block_rows=1, tag="a")
    try:
        _wait_for(ready.exists, 120, "the child to be ready", process)
        go.touch()

        def writing_chunks():
            for staging in partition_dir.glob(".*.tmp-*"):
                chunk_dir = staging / PARAMS_DIR / "chunks" / "c"
                if chunk_dir.exists() and sum(1 for _ in chunk_dir.iterdir()) >= 20:
                    return staging
            return None

        staging = _wait_for(writing_chunks, 120, "zarr chunks in the staging directory", process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    # nothing half-written is valid: no manifest anywhere, no reference, the cache misses
    assert staging.exists() and read_manifest(UPath(staging)) is None
    assert _published(partition_dir) == []
    store = ArtifactStore(root=str(artifacts))
    assert not store.ref_path("model_parameters", KEY).exists()
    rows_written = sum(1 for _ in (staging / PARAMS_DIR / "chunks" / "c").iterdir())
    assert 20 <= rows_written < -(-6_000_000 // 8192)  # killed between the 20th and the last of 733 rows

    # the re-run completes (a cache miss: the killed run published nothing) and reads back exactly
    resources = zoo_resources(zoo, artifacts)
    result = materialize_partition(model_parameters, KEY, resources, DagsterInstance.ephemeral())
    assert result.success, failure_text(result)
    meta = metadata_of(result)
    assert meta["cache_hit"] is False
    [published] = _published(partition_dir)
    _assert_round_trip(published, weights)
    assert staging.exists()  # the leftover is recent (its heartbeat is seconds old): ignored, not removed

    # once it is old, garbage collection removes it, and only it
    removed = store.collect_garbage(now=time.time() + storage.STALE_AFTER_SECONDS + 60)
    assert [Path(p.path) for p in removed] == [staging]
    assert temporaries(artifacts) == [] and _published(partition_dir) == [published]
    assert materialize_partition(model_parameters, KEY, resources, DagsterInstance.ephemeral()).success


def test_two_processes_materializing_one_partition_publish_one_valid_copy(tmp_path, big_zoo):
    zoo, weights = big_zoo
    artifacts = tmp_path / "artifacts"
    children = [_start_child(tmp_path, zoo, artifacts, block_rows=16, tag=tag) for tag in ("a", "b")]
    try:
        for process, ready, _ in children:
            _wait_for(ready.exists, 120, "both children to be ready", process)
        (tmp_path / "go").touch()  # both start building at the same moment
        outputs = []
        for process, _, _ in children:
            stdout, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process, _, _ in children:
            if process.poll() is None:
                process.kill()
    assert all(o["success"] for o in outputs), outputs
    assert outputs[0]["content_hash"] == outputs[1]["content_hash"]
    assert outputs[0]["path"] == outputs[1]["path"]
    partition_dir = artifacts / "model_parameters" / KEY
    [published] = _published(partition_dir)
    assert [p for p in partition_dir.iterdir()] == [published]  # the loser's staging copy was discarded
    _assert_round_trip(published, weights)
    ref = ArtifactRef.from_dict(read_json(ArtifactStore(root=str(artifacts)).ref_path("model_parameters", KEY)))
    assert Path(ref.directory(ArtifactStore(root=str(artifacts))).path) == published
    assert temporaries(artifacts) == []


# --- garbage collection of leftovers --------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (past, past))


def test_only_old_leftovers_are_collected_never_a_live_write(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "HEARTBEAT_SECONDS", 0.05)
    parent = tmp_path / "asset" / "part"
    published = parent / ("a" * 32)
    published.mkdir(parents=True)
    write_manifest(UPath(published), {"content_hash": "x"})
    leftover = parent / f".{'b' * 32}.tmp-{'0' * 32}"
    (leftover / "data.zarr").mkdir(parents=True)
    (leftover / "data.zarr" / "c0").write_bytes(b"half")
    ref_leftover = parent / f".p.json.tmp-{'1' * 32}"
    ref_leftover.write_text('{"half": ')
    not_ours = parent / ".notes.tmp-keep"  # not our naming scheme
    not_ours.write_text("user file")
    for path in (published, leftover, ref_leftover, not_ours):
        _age(path, 3 * 3600)

    with staged_directory(UPath(parent / ("c" * 32))) as live:
        (Path(live.path) / "data.bin").write_bytes(b"written long ago")
        _age(Path(live.path), 3 * 3600)  # silent for hours (a very slow step) ...
        time.sleep(0.3)  # ... but its heartbeat keeps beating
        removed = collect_stale_temporaries(UPath(parent), older_than_s=3600)
        assert sorted(Path(p.path).name for p in removed) == sorted([leftover.name, ref_leftover.name])
        assert Path(live.path).exists()
        write_manifest(live, {"content_hash": "y"})
    assert read_manifest(UPath(parent / ("c" * 32))) == {"content_hash": "y"}
    assert not (parent / ("c" * 32) / HEARTBEAT_NAME).exists()  # the heartbeat is not published
    assert published.exists() and not_ours.exists() and read_manifest(UPath(published)) is not None


def test_a_writer_whose_directory_was_collected_refuses_to_publish(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "HEARTBEAT_SECONDS", 0.05)
    final = UPath(tmp_path / "asset" / "part" / ("d" * 32))
    with pytest.raises(RuntimeError, match="removed while being written"), staged_directory(final) as tmp:
        (Path(tmp.path) / "one.bin").write_bytes(b"1")
        # a collector that believes this writer dead (e.g. the process was suspended for a day)
        collect_stale_temporaries(final.parent, older_than_s=3600, now=time.time() + 86400)
        time.sleep(0.2)
        (Path(tmp.path)).mkdir(parents=True, exist_ok=True)  # the zombie writer carries on ...
        (Path(tmp.path) / "two.bin").write_bytes(b"2")
        write_manifest(tmp, {"content_hash": "zombie"})  # ... and finishes
    assert read_manifest(final) is None and not Path(final.path).exists()


def test_remote_publication_moves_the_manifest_last(monkeypatch):
    root = UPath("memory://robustness-publish")
    final = root / "asset" / "part" / ("e" * 32)
    moved: list[str] = []
    fs = root.fs
    real_mv = type(fs).mv

    def recording_mv(self, path1, path2, *args, **kwargs):
        moved.append(str(path2))
        return real_mv(self, path1, path2, *args, **kwargs)

    monkeypatch.setattr(type(fs), "mv", recording_mv)
    with staged_directory(final) as tmp:
        for name in ("a.bin", "z.bin", "sub/b.bin"):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(b"x")
        write_manifest(tmp, {"content_hash": "m"})
    into_final = [m for m in moved if m.startswith(final.path + "/")]  # (not the manifest's own temp file)
    assert len(into_final) == 4 and into_final[-1] == final.path + "/manifest.json"
    assert read_manifest(final) == {"content_hash": "m"} and (final / "sub" / "b.bin").read_bytes() == b"x"
    assert not [p for p in (root / "asset" / "part").iterdir() if ".tmp-" in p.name]


# --- the _refs pointer files ---------------------------------------------------------------------------


def test_reference_files_are_replaced_atomically_under_concurrent_reads(tmp_path):
    path = UPath(tmp_path / "_refs" / "asset" / "p.json")
    values = [{"cache_key": c * 32, "padding": c * 50_000} for c in "ab"]
    write_json(path, values[0])
    stop, bad = threading.Event(), []

    def reader():
        while not stop.is_set():
            try:
                if read_json(path) not in values:
                    bad.append("unexpected content")
            except (json.JSONDecodeError, FileNotFoundError) as error:
                bad.append(repr(error))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(150):
            write_json(path, values[i % 2])
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert not [p for p in Path(tmp_path / "_refs" / "asset").iterdir() if ".tmp-" in p.name]


def test_a_crash_while_writing_a_reference_keeps_the_old_one(tmp_path, monkeypatch):
    path = UPath(tmp_path / "p.json")
    write_json(path, {"cache_key": "old"})
    real_write_text = type(path).write_text

    def crash_half_way(self, data, *args, **kwargs):
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(path), "write_text", crash_half_way)
    with pytest.raises(OSError, match="No space left"):
        write_json(path, {"cache_key": "new", "more": list(range(100))})
    monkeypatch.undo()
    assert read_json(path) == {"cache_key": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # the half-written temporary is gone


def test_a_corrupt_reference_is_a_clear_error(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    save_file({"w": torch.randn(3)}, zoo / "m.safetensors")
    resources = zoo_resources(zoo, tmp_path / "artifacts")
    assert materialize_partition(model_parameters, "m", resources, DagsterInstance.ephemeral()).success
    ref_path = resources["store"].ref_path("model_parameters", "m")
    Path(ref_path.path).write_text('{"asset": "model_parameters", "partition": "m", ')  # edited by hand, cut
    io_manager = resources["io_manager"]
    with pytest.raises(ValueError, match=r"m\.json: corrupt artifact reference .*re-materialize"):
        io_manager._load_one("model_parameters", "m")
