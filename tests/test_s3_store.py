"""The artifact store on a real S3 API (moto's server on loopback, a subprocess), through the same
code as a local folder: publication (temporary path, manifest last), the ``_refs`` pointer, cache
lookups, zarr on fsspec, garbage collection, and real assets of the reduced world. Credentials and
endpoint come only from the ``AWS_*`` variables; the root is a plain ``s3://bucket/prefix``."""

import threading
import time
import uuid

import boto3
import numpy as np
import pytest
import zarr
from s3fs import S3FileSystem
from dagster import DagsterInstance

from assets.shared.artifacts import current_artifacts, current_ref, materialize_cached
from ml_core.artifacts import (
    HEARTBEAT_NAME,
    MANIFEST_NAME,
    read_manifest,
    staged_directory,
    write_json,
    write_manifest,
    zarr_store,
)
from ml_core.artifacts import storage
from pipelines import cluster
from pipelines.runner import materialize_all
from resources.artifact_store import ArtifactStore
from tests.pipeline_helpers import FAST_RUN_CONFIG, resources_for

BUCKET = "modelrec-s3-tests"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("s3")
    service = None
    with pytest.MonkeyPatch.context() as patch:
        try:
            service, aws = cluster.start_s3(run_dir, cluster.cluster_env(run_dir), bucket=BUCKET)
            for key, value in aws.items():
                patch.setenv(key, value)
            # s3fs caches one filesystem per set of arguments: one made in an earlier module (tests/test_cluster.py)
            # for another endpoint, read from the same unset arguments, would be handed out again
            S3FileSystem.clear_instance_cache()
            yield aws
        finally:
            S3FileSystem.clear_instance_cache()
            if service is not None:
                cluster.stop_group(service.pid)


@pytest.fixture
def store(s3):
    return ArtifactStore(root=f"s3://{BUCKET}/{uuid.uuid4().hex}")


def _client(aws):
    return boto3.client("s3")  # endpoint and credentials from the AWS_* variables only


def _keys(aws, prefix):
    listing = _client(aws).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_publication_on_s3_is_complete_or_absent(store, s3):
    final = store.artifact_dir("asset", "part", "key")
    with pytest.raises(RuntimeError, match="boom"), staged_directory(final) as tmp:
        (tmp / "data.bin").write_bytes(b"half")
        raise RuntimeError("boom")
    prefix = store.root_path.path.split("/", 1)[1]
    assert _keys(s3, prefix) == []  # neither the artifact nor its temporary: S3 has no empty folders
    with pytest.raises(RuntimeError, match="no manifest"), staged_directory(final) as tmp:
        (tmp / "data.bin").write_bytes(b"no manifest")
    assert _keys(s3, prefix) == []
    with staged_directory(final) as tmp:
        (tmp / "data.bin").write_bytes(b"full")
        write_manifest(tmp, {"content_hash": "abc"})
    assert _keys(s3, prefix) == [f"{prefix}/asset/part/key/data.bin", f"{prefix}/asset/part/key/{MANIFEST_NAME}"]
    with staged_directory(final) as tmp:  # a second publisher of the same key keeps the first copy
        (tmp / "data.bin").write_bytes(b"other")
        write_manifest(tmp, {"content_hash": "abc"})
    assert (final / "data.bin").read_bytes() == b"full"
    assert len(_keys(s3, prefix)) == 2


def test_a_reader_never_sees_a_manifest_before_all_the_data(store, s3):
    final = store.artifact_dir("asset", None, "many")
    names = [f"part-{i:02d}.bin" for i in range(24)]
    seen: list[tuple[bool, int]] = []
    stop = threading.Event()
    reader = ArtifactStore(root=store.root)  # another reader of the same prefix

    def read():
        client = boto3.client("s3")
        prefix = reader.artifact_dir("asset", None, "many").path.split("/", 1)[1] + "/"
        while not stop.is_set():
            if read_manifest(reader.artifact_dir("asset", None, "many")) is not None:
                listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
                seen.append((True, sum(o["Key"].endswith(".bin") for o in listing)))
            else:
                seen.append((False, 0))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        with staged_directory(final) as tmp:
            for name in names:
                (tmp / name).write_bytes(name.encode() * 100)
            write_manifest(tmp, {"content_hash": "many"})
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert any(not published for published, _ in seen)  # it read while the artifact was being published
    assert seen[-1][0]
    assert {count for published, count in seen if published} == {len(names)}


def _publish(final, content: bytes, names):
    with staged_directory(final) as tmp:
        for name in names:
            (tmp / name).write_bytes(content)
        write_manifest(tmp, {"content_hash": "same key", "by": content.decode()})


def test_a_second_publisher_of_one_key_never_breaks_the_first_ones_copy(store, s3, monkeypatch):
    """Two runs of one partition at once (the cluster's two launches): B starts publishing while A is moving
    its files in. Before the claim, B took A's half-moved files for a leftover and deleted them, and A then
    published its manifest over the hole (a worker's zarr read failed: FileNotFoundError('chunks')), or B's
    and A's files were mixed. The published artifact must hold every file, all from the publisher whose
    manifest it is."""
    final = store.artifact_dir("model_parameters", "m", "k")
    names = [f"params.zarr/chunks/c/{i}" for i in range(6)] + ["params.zarr/zarr.json"]
    real_mv = S3FileSystem.mv
    a_moving, b_over = threading.Event(), threading.Event()

    def mv(self, path1, path2, *args, **kwargs):  # A pauses after its first file lands in final
        real_mv(self, path1, path2, *args, **kwargs)
        if threading.current_thread().name == "A" and path2.startswith(final.path + "/") and not a_moving.is_set():
            a_moving.set()
            b_over.wait(2.0)  # until B is done, or 2 s (a B that waits for A's manifest would wait forever)

    monkeypatch.setattr(S3FileSystem, "mv", mv)
    errors = []

    def publish_a():
        try:
            _publish(final, b"A", names)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    a = threading.Thread(target=publish_a, name="A")
    a.start()
    assert a_moving.wait(30)
    try:
        _publish(final, b"B", names)
    finally:
        b_over.set()
        a.join()
    assert not errors
    winner = read_manifest(final)["by"]
    assert {name: (final / name).read_bytes().decode() for name in names} == {name: winner for name in names}
    prefix = store.root_path.path.split("/", 1)[1]
    assert not [k for k in _keys(s3, prefix) if ".tmp-" in k or k.endswith(storage.CLAIM_NAME)]


def test_a_publisher_that_died_while_moving_files_in_is_taken_over(store, s3, monkeypatch):
    """A claim nobody refreshes (its publisher was killed mid-move) delays the next publisher by
    CLAIM_STALE_SECONDS, never forever; the half-moved files are overwritten, none is deleted."""
    monkeypatch.setattr(storage, "CLAIM_STALE_SECONDS", 0.5)
    final = store.artifact_dir("asset", None, "dead")
    (final / storage.CLAIM_NAME).write_text("dead-publisher 3")
    (final / "a.bin").write_bytes(b"dead")  # moved in before it died; no manifest
    start = time.monotonic()
    _publish(final, b"new", ["a.bin", "b.bin"])
    assert 0.5 <= time.monotonic() - start < 20
    assert read_manifest(final)["by"] == "new"
    assert (final / "a.bin").read_bytes() == (final / "b.bin").read_bytes() == b"new"
    assert not (final / storage.CLAIM_NAME).exists()


def test_refs_lookup_cache_hit_and_listing_see_other_writers(store, s3):
    built = []

    def build(directory):
        built.append(directory)
        (directory / "values.npy").write_bytes(b"\x00" * 16)
        return "hash-1", {"n": 1}

    first = materialize_cached(store, asset="toy", partition="p1", code_version="1", config={}, inputs={}, build=build, log=None)
    second = materialize_cached(store, asset="toy", partition="p1", code_version="1", config={}, inputs={}, build=build, log=None)
    assert (first.cache_hit, second.cache_hit, len(built)) == (False, True, 1)
    assert second.ref == first.ref and second.summary == {"n": 1}
    write_json(store.ref_path("toy", "p1"), first.ref.to_dict())
    assert current_ref(store, "toy", "p1") == first.ref
    assert set(current_artifacts(store, "toy")) == {"p1"}
    # another process (here: boto3, bypassing this process's filesystem) publishes p2: a listing taken
    # before must not hide it, nor make its artifact look absent
    client = boto3.client("s3")
    prefix = store.root_path.path.split("/", 1)[1]
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/toy/p2/k2/{MANIFEST_NAME}", Body=b'{"content_hash": "hash-2"}')
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/_refs/toy/p2.json",
                      Body=b'{"asset": "toy", "partition": "p2", "cache_key": "k2", "content_hash": "hash-2"}')
    assert set(current_artifacts(store, "toy")) == {"p1", "p2"}
    assert store.artifact_dir("toy", "p2", "k2").exists()
    assert store.lookup("toy", "p2", "k2") == {"content_hash": "hash-2"}


def test_zarr_arrays_on_s3(store):
    directory = store.artifact_dir("zarr_asset", None, "k")
    values = np.arange(24 * 16, dtype=np.float32).reshape(24, 16)
    array = zarr.create_array(zarr_store(directory), shape=values.shape, chunks=(8, 16), dtype="float32")
    array[:] = values
    array.attrs["what"] = "test"
    again = zarr.open_array(zarr_store(directory, read_only=True), mode="r")
    np.testing.assert_array_equal(again[:], values)
    assert again.attrs["what"] == "test"


def test_garbage_collection_on_s3_removes_only_old_staging_leftovers(store, s3):
    published = store.artifact_dir("asset", "p", "done")
    with staged_directory(published) as tmp:
        (tmp / "x.bin").write_bytes(b"x")
        write_manifest(tmp, {"content_hash": "done"})
    partition = store.root_path / "asset" / "p"
    killed = partition / f".old.tmp-{uuid.uuid4().hex}"  # a run killed mid-write: files, no manifest
    (killed / "half.bin").write_bytes(b"half")
    (killed / HEARTBEAT_NAME).write_text("dead")
    assert store.collect_garbage(older_than_s=3600) == []  # written a moment ago: maybe alive
    removed = store.collect_garbage(older_than_s=3600, now=time.time() + 7200)
    assert [p.name for p in removed] == [killed.name]
    prefix = store.root_path.path.split("/", 1)[1]
    assert all(".tmp-" not in key for key in _keys(s3, prefix))
    assert read_manifest(published) == {"content_hash": "done"}


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_real_assets_on_s3_have_the_local_data_versions(store, reduced_world, tmp_path):
    stages = [("model_parameters", "models"), ("model_source_tokens", "models"), ("dataset_tokens", "datasets")]
    on_s3 = materialize_all(DagsterInstance.ephemeral(), resources=resources_for(reduced_world, store.root),
                            run_config=FAST_RUN_CONFIG, stages=stages, executor="in_process")
    local = materialize_all(DagsterInstance.ephemeral(), resources=resources_for(reduced_world, tmp_path / "artifacts"),
                            run_config=FAST_RUN_CONFIG, stages=stages, executor="in_process")
    versions = {(r.asset, r.partition): r.data_version for r in on_s3}
    assert versions == {(r.asset, r.partition): r.data_version for r in local}
    assert len(versions) == 2 * len(reduced_world.model_names) + len(reduced_world.dataset_names)
    for record in on_s3:  # each readable back through its pointer, as a downstream asset reads it
        ref = current_ref(store, record.asset, record.partition)
        assert ref is not None and ref.content_hash == record.data_version
        assert read_manifest(ref.directory(store))["content_hash"] == record.data_version
