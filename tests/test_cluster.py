"""The reduced world end to end on a cluster: a PostgreSQL instance (a fresh database), 2 Celery
workers (RabbitMQ), artifacts on S3 (moto's server on loopback); the same data versions as a local,
in-process run on the same inputs. Then two runs of one partition at once, and a worker killed with
SIGKILL in the middle of a step.

Every service is required: a missing PostgreSQL or RabbitMQ fails the module (``.ci/run`` starts
them where the machine does not run them).
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from s3fs import S3FileSystem
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from assets.shared.artifacts import current_artifact, current_ref
from ml_core.artifacts import MANIFEST_NAME, partition_key, read_json, read_manifest
from pipelines import cluster, runner
from pipelines.definitions import default_resources
from pipelines.executors import celery_config
from pipelines.jobs import JOB_OF_ASSET
from pipelines.runner import PartitionsFailed, materialize_all
from resources import settings
from tests.pipeline_helpers import FAST_RUN_CONFIG, resources_for, world_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
RUN_CONFIG = json.loads(json.dumps(FAST_RUN_CONFIG))
RUN_CONFIG["ops"]["transfer_performance"] = {"config": {"protocol": {"epochs": 2, "min_steps": 10}}}
N_WORKERS = 2


#: assets whose content holds wall-clock measurements (``model_costs``: CPU latency; ``model_recommendations``:
#: its latency columns and the front they decide): two runs agree on what they compute, never on what they time
TIMED = {"model_costs", "model_recommendations"}
TIMED_COLUMNS = ["latency_ms_b1", "latency_ms_b32", "on_front"]


def _versions(records):
    return {(r.asset, r.partition): r.data_version for r in records}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, reduced_world):
    """The reference: the same world, in this process, on a local folder and an ephemeral instance."""
    root = tmp_path_factory.mktemp("cluster_local")
    instance = DagsterInstance.ephemeral()
    # This process keeps its BLAS threads (the workers run with OMP_NUM_THREADS=1): the scores are computed
    # on one BLAS thread whatever the process's setting. Torch runs on one intra-op thread on both sides
    # (``one_torch_thread`` here, OMP_NUM_THREADS=1 on the workers): the trained and encoded assets'
    # floats depend on torch's thread count (see the README).
    resources = resources_for(reduced_world, root / "artifacts")
    records = materialize_all(instance, resources=resources, run_config=RUN_CONFIG, executor="in_process")
    return {"records": records, "store": resources["store"]}


@pytest.fixture(scope="module")
def services(tmp_path_factory, reduced_world):
    run_dir = tmp_path_factory.mktemp("cluster")
    env = cluster.cluster_env(run_dir) | world_env(reduced_world, f"s3://{cluster.DEFAULT_BUCKET}/{uuid.uuid4().hex}")
    env |= {"DAGSTER_POSTGRES_DB": f"cluster_core_{uuid.uuid4().hex[:12]}", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    started = []
    created = False
    with pytest.MonkeyPatch.context() as patch:
        try:
            s3, aws = cluster.start_s3(run_dir, env)
            started.append(s3)
            env |= aws
            for key, value in env.items():  # this process plans and orchestrates with the workers' settings
                if os.environ.get(key) != value:
                    patch.setenv(key, value)
            pg = settings.postgres_env()
            created = cluster.create_database(pg)
            home = cluster.prepare_home(run_dir / "dagster_home")
            workers = [cluster.start_worker(f"worker{i + 1}-{uuid.uuid4().hex[:6]}", env, run_dir) for i in range(N_WORKERS)]
            started += workers
            instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
            yield {"env": env, "run_dir": run_dir, "instance": instance, "workers": workers, "started": started,
                   "store": default_resources()["store"]}
            instance.dispose()
        finally:
            S3FileSystem.clear_instance_cache()  # its endpoint goes with this module's S3 server
            for service in reversed(started):
                cluster.stop_group(service.pid)
            if created:
                cluster.drop_database(settings.postgres_env())


@pytest.fixture(scope="module")
def cluster_run(services):
    start = time.perf_counter()
    records = materialize_all(services["instance"], resources=default_resources(), run_config=RUN_CONFIG, executor="celery")
    return {"records": records, "seconds": time.perf_counter() - start}


def _succeeded_tasks(service) -> int:
    return service.log.read_text(errors="replace").count("] succeeded in ")


def test_the_cluster_run_gives_the_local_data_versions(local_run, cluster_run, services):
    cluster_versions, local_versions = _versions(cluster_run["records"]), _versions(local_run["records"])
    assert set(cluster_versions) == set(local_versions)
    assert all(cluster_versions.values())
    computed = {k for k in local_versions if k[0] not in TIMED}
    assert {k: cluster_versions[k] for k in computed} == {k: local_versions[k] for k in computed}
    # the timed assets: the same parameters, sizes, FLOPs and rankings; only the measured latencies differ
    for asset, partition in sorted(set(local_versions) - computed):
        here = current_artifact(local_run["store"], asset, partition).load()
        there = current_artifact(services["store"], asset, partition).load()
        if asset == "model_costs":
            assert (here.params, here.size_bytes, here.flops) == (there.params, there.size_bytes, there.flops)
        else:
            pd.testing.assert_frame_equal(here.drop(columns=TIMED_COLUMNS), there.drop(columns=TIMED_COLUMNS))
    assert all(r.launched for r in cluster_run["records"])
    # the steps ran on the workers (both of them), and the runs are recorded in PostgreSQL
    assert all(_succeeded_tasks(w) > 0 for w in services["workers"]), [w.log for w in services["workers"]]
    runs = services["instance"].get_runs()
    assert len(runs) == len({(r.asset, r.partition) for r in cluster_run["records"]})
    # each under its stage's named job, as a local run (the UI's Jobs page lists them), observing its files first
    assert {run.tags["modelrec/stage"]: run.job_name for run in runs} == {
        r.asset: JOB_OF_ASSET[r.asset] for r in cluster_run["records"]}
    observed = {run.tags["modelrec/stage"]: {k.path[-1] for k in run.asset_selection or ()} for run in runs}
    assert observed["model_parameters"] == {"model_checkpoints", "model_parameters"}
    assert observed["autoencoder"] == {"autoencoder"}
    assert type(services["instance"].run_storage).__name__ == "PostgresRunStorage"
    # every artifact the refs point at is published (manifest) on S3
    store = services["store"]
    assert store.root_path.protocol == "s3"
    for record in cluster_run["records"]:
        ref = current_ref(store, record.asset, record.partition)  # its own folder, or a shared one (source samples)
        manifest = read_manifest(ref.directory(store))
        assert manifest is not None and manifest["content_hash"] == record.data_version, (record, ref)


def _artifact_dirs(store, asset, partition):
    folder = store.root_path / asset / (partition or "_")
    store.root_path.fs.invalidate_cache()
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


LAUNCH_ONE = """
import json, sys
from dagster import DagsterInstance
from pipelines.executors import launch_stage
instance = DagsterInstance.get()
result = launch_stage(instance, sys.argv[1], sys.argv[2] or None, json.loads(sys.argv[3]), {})
print(json.dumps([result.success] + [e.materialization.tags["dagster/data_version"]
                                     for e in result.get_asset_materialization_events()]))
"""


def test_one_partition_launched_twice_at_once_publishes_one_artifact(cluster_run, services):
    store = services["store"]
    model = sorted(r.partition for r in cluster_run["records"] if r.asset == "model_parameters")[0]
    config = {"ops": {"model_parameters": {"config": {"block_rows": 16}}}}  # a new cache key: both must build
    before = set(_artifact_dirs(store, "model_parameters", model))
    values = current_artifact(store, "model_parameters", model).load().chunks[:]
    # two orchestrators (processes, as two launches from two machines would be), two workers
    launches = [subprocess.Popen([sys.executable, "-c", LAUNCH_ONE, "model_parameters", model, json.dumps(config)],
                                 env=services["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=cluster.PROJECT_ROOT) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in launches]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(r[0] for r in results), outputs
    versions = {v for r in results for v in r[1:]}
    assert len(versions) == 1
    new = set(_artifact_dirs(store, "model_parameters", model)) - before
    assert len(new) == 1, new  # one artifact, no staging leftover
    (published,) = new
    assert read_manifest(store.root_path / "model_parameters" / model / published)["content_hash"] == versions.pop()
    # and whole: the same values as before, read through the new pointer (two publishers once left it with
    # files deleted under its manifest, and the next step's zarr read failed: FileNotFoundError('chunks'))
    assert current_ref(store, "model_parameters", model).cache_key == published
    np.testing.assert_array_equal(current_artifact(store, "model_parameters", model).load().chunks[:], values)


def _busy_worker(services, timeout=60.0):
    """The worker (Service) running a task right now, by Celery's own report."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    config = celery_config()
    app = make_app(CeleryExecutor.for_cli(broker=config["broker"], backend=config["backend"],
                                          config_source=config["config_source"]).app_args())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = app.control.inspect(timeout=2.0).active() or {}
        for hostname, tasks in active.items():
            if tasks:
                for worker in services["workers"]:
                    if hostname.startswith(f"{worker.name}@"):
                        return worker
        time.sleep(0.2)
    raise TimeoutError("no worker reported an active task")


def test_a_worker_killed_mid_step_loses_nothing_and_the_run_ends_green(cluster_run, services):
    store = services["store"]
    config = {"ops": {"autoencoder": {"config": json.loads(json.dumps(RUN_CONFIG["ops"]["autoencoder"]["config"]))}}}
    config["ops"]["autoencoder"]["config"]["tokens"]["trainer"]["epochs"] = 25  # a new cache key, a longer step
    folder = store.root_path / "autoencoder" / "_"
    log = services["run_dir"] / "sigkill-launch.log"
    with log.open("w") as err:  # a file, not a pipe: the run logs more than a pipe holds while nobody reads it
        launch = subprocess.Popen([sys.executable, "-c", LAUNCH_ONE, "autoencoder", "", json.dumps(config)],
                                  env=services["env"], stdout=subprocess.PIPE, stderr=err, text=True,
                                  cwd=cluster.PROJECT_ROOT)

    def staging():
        store.root_path.fs.invalidate_cache()
        return [p for p in folder.iterdir() if ".tmp-" in p.name]

    deadline = time.monotonic() + 120
    while not staging() and time.monotonic() < deadline:
        time.sleep(0.2)
    killed_writes = {p.name for p in staging()}
    assert killed_writes, "the step never started writing"
    victim = _busy_worker(services)
    os.killpg(victim.pid, 9)  # SIGKILL the whole worker: the Celery process and its pool
    services["workers"].remove(victim)
    services["workers"].append(cluster.start_worker(f"{victim.name}-again", services["env"], services["run_dir"]))
    services["started"].append(services["workers"][-1])
    out, _ = launch.communicate(timeout=300)
    success, version = json.loads(out.strip().splitlines()[-1])
    assert success, log.read_text()[-3000:]
    # the killed worker's half-written directory is still there, unpublished (the step ran again elsewhere)
    assert killed_writes <= {p.name for p in staging()}
    ref = read_json(store.ref_path("autoencoder", None))
    assert ref["content_hash"] == version
    store.root_path.fs.invalidate_cache()
    for entry in folder.iterdir():  # nothing half-published: every artifact has its manifest
        if not entry.name.startswith("."):
            assert (entry / MANIFEST_NAME).exists(), entry
    assert read_manifest(folder / ref["cache_key"])["content_hash"] == version
    removed = store.collect_garbage(now=time.time() + 24 * 3600)  # once it is old: swept, the artifact kept
    assert {p.name for p in removed} >= killed_writes
    assert read_manifest(folder / ref["cache_key"])["content_hash"] == version


REDIS = "redis://127.0.0.1:6379/0"
RUN_STAGE = """
import json, sys
from dagster import DagsterInstance
from pipelines.runner import materialize_all
records = materialize_all(DagsterInstance.get(), run_config=json.loads(sys.argv[1]), stages=[(sys.argv[2], "models")],
                          only_partitions={"models": sys.argv[3:]}, executor="celery")
print(json.dumps([[r.partition, r.launched, r.data_version] for r in records]))
"""


def _models(world, n):
    return sorted(partition_key(name) for name in world.model_names)[:n]


def test_a_run_on_a_redis_broker_completes_on_its_worker(services, reduced_world):
    """The same cluster (PostgreSQL instance, S3 artifacts) with the Celery broker and result backend on Redis
    instead of RabbitMQ: two partitions of a small asset, built (a new cache key) by a worker that listens
    on Redis only, launched by a process whose settings say Redis (a process builds a stage's job, executor
    and broker included, once). A missing Redis fails here (``.ci/services`` starts it)."""
    env = services["env"] | {"MODELREC_CELERY_BROKER": REDIS, "MODELREC_CELERY_BACKEND": REDIS}
    worker = cluster.start_worker(f"redis-{uuid.uuid4().hex[:6]}", env, services["run_dir"])
    models = _models(reduced_world, 2)
    config = {"ops": {"model_parameters": {"config": {"block_rows": 8}}}}  # a new cache key: built there
    try:
        done = subprocess.run([sys.executable, "-c", RUN_STAGE, json.dumps(config), "model_parameters", *models],
                              env=env, capture_output=True, text=True, timeout=240, cwd=cluster.PROJECT_ROOT)
    finally:
        cluster.stop_group(worker.pid)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r[0] for r in records] == models and all(launched and version for _, launched, version in records)
    # each step ran on the Redis worker: per run, the checkpoint's observation (model_checkpoints) and the flattening
    assert _succeeded_tasks(worker) == 2 * len(models), worker.log
    for model, _, version in records:
        ref = current_ref(services["store"], "model_parameters", model)
        assert read_manifest(ref.directory(services["store"]))["content_hash"] == version


def _drop_connections_while_a_run_goes_on(db: str, stop: threading.Event, dropped: list[int]) -> None:
    """Once a run of ``db``'s instance has started, terminate every connection to ``db`` (the orchestrator's
    and the workers') with ``pg_terminate_backend`` until one was dropped, or ``stop``."""
    connection = cluster._pg_connect(settings.postgres_env(), db)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            while not stop.is_set() and not dropped:
                cursor.execute("select count(*) from runs where status = 'STARTED'")
                if cursor.fetchone()[0]:
                    cursor.execute("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                                   "where datname = %s and pid <> pg_backend_pid()", (db,))
                    (count,) = cursor.fetchone()
                    if count:
                        dropped.append(count)
                time.sleep(0.01)
    finally:
        connection.close()


def test_a_database_connection_dropped_mid_run_recovers_or_fails_in_one_line(services, reduced_world, monkeypatch):
    """The instance's PostgreSQL connections dropped (pg_terminate_backend) in the middle of a run: the run
    recovers (the runner launches it again; a worker's step is retried) or its partition fails with one
    line; either way the instance stays usable and the artifact is whole."""
    monkeypatch.setattr(runner, "DB_RETRY_SECONDS", 0.2)
    (model,) = _models(reduced_world, 1)
    config = {"ops": {"model_parameters": {"config": {"block_rows": 4}}}}  # a new cache key: a real step
    kwargs = {"resources": default_resources(), "run_config": config, "stages": [("model_parameters", "models")],
              "only_partitions": {"models": [model]}, "executor": "celery"}
    stop, dropped = threading.Event(), []
    dropper = threading.Thread(target=_drop_connections_while_a_run_goes_on,
                               args=(services["env"]["DAGSTER_POSTGRES_DB"], stop, dropped))
    dropper.start()
    try:
        records = materialize_all(services["instance"], **kwargs)
    except PartitionsFailed as failed:
        (failure,) = failed.failures
        assert failure.reason and "\n" not in failure.reason, failure.reason
        records = materialize_all(services["instance"], **kwargs)  # the instance is usable: again, green
    finally:
        stop.set()
        dropper.join()
    assert dropped, "no connection was dropped while the run went on"
    (record,) = records
    assert record.data_version
    assert read_manifest(current_ref(services["store"], "model_parameters", model).directory(services["store"]))[
        "content_hash"] == record.data_version


def test_an_unreachable_database_fails_the_partition_in_one_line(services, reduced_world, monkeypatch):
    """The error a dropped connection raises (as seen in the test above, when it lands on this process),
    twice: the partition fails with one line that says so; every other partition still runs."""
    from psycopg2 import OperationalError as Psycopg2Error
    from sqlalchemy.exc import OperationalError

    monkeypatch.setattr(runner, "DB_RETRY_SECONDS", 0.0)
    lost = OperationalError("SELECT runs.id FROM runs", {}, Psycopg2Error(
        "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally"))
    first, second = _models(reduced_world, 2)
    real = runner.launch_stage
    calls = []

    def launch(instance, asset, partition, *args):
        calls.append(partition)
        if partition == first:
            raise lost
        return real(instance, asset, partition, *args)

    monkeypatch.setattr(runner, "launch_stage", launch)
    with pytest.raises(PartitionsFailed) as failed:
        materialize_all(services["instance"], resources=default_resources(), stages=[("model_parameters", "models")],
                        only_partitions={"models": [first, second]}, plan=False, executor="celery")
    (failure,) = failed.value.failures
    assert (failure.partition, failure.reason) == (first, "the Dagster instance's database connection was lost "
                                                   "(OperationalError: server closed the connection unexpectedly)")
    assert calls == [first, first, second]
    assert [r.partition for r in failed.value.records] == [second]
