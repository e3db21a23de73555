"""The internet-scale rehearsal: the control plane at 10,000 models, on a PostgreSQL instance.

Nothing is trained or read: the zoo is 10,000 EMPTY STAND-IN checkpoint files (the sensor only lists
and ``stat``s them), the 1,000 datasets are empty STAND-IN folders, and the artifact store holds
STAND-IN ``_refs`` pointers and manifests (random hashes, one model in ten built from an older
autoencoder) for the re-embedding schedule to read. What is real: the project's sensor, schedule,
registration and staleness code, Dagster 1.13 and PostgreSQL. Each operation is timed against
its limit (Dagster evaluates a sensor or schedule tick in at most 60 s by default) and printed as a
table. The database is created fresh (``modelrec_rehearsal_<time>_<pid>``) and dropped afterwards.

    .venv/bin/python -m benchmarks.rehearsal                 # 10,000 models, 1,000 new, 1,000 datasets
    .venv/bin/python -m benchmarks.rehearsal --models 200 --new-models 20 --datasets 20 --run-partitions 20
    .venv/bin/python -m benchmarks.rehearsal --s3-models 1000   # + the staleness query against S3 (moto)

``--dsn`` (or ``MODELREC_REHEARSAL_DSN``): a libpq URL without a database, default
``postgresql://postgres@127.0.0.1:5432``; a password comes from ``PGPASSWORD`` (libpq), never the URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from bisect import bisect_left
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import psycopg2
import yaml
from dagster import (
    AssetKey,
    BackfillPolicy,
    BetaWarning,
    DagsterInstance,
    DynamicPartitionsDefinition,
    MaterializeResult,
    asset,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    materialize,
)
from tqdm import tqdm

from ml_core.artifacts.storage import write_json, write_manifest
from pipelines.registration import register_partitions
from pipelines.schedules import RESUME_KEY, SWEEP_BUDGET_SECONDS, reembed_stale_models
from pipelines.staleness import READ_THREADS, stale_model_embeddings
from pipelines.sensor_cursor import previous_fingerprints
from pipelines.sensors import model_zoo_sensor
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from resources.settings import setting

TICK_LIMIT_S = 60.0  # Dagster's default sensor / schedule evaluation timeout (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS)
MODELS = "models"  # the project's dynamic partitions (assets/shared/partitions.py), addressed by name
BASELINE_RUNS = 10  # single-partition runs timed to price "one run per partition"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # not one line per partition
STALE_EVERY = 10  # one seeded model in ten has an embedding from an older autoencoder


@dataclass
class Row:
    operation: str
    count: int
    seconds: float
    limit_s: float | None = None
    limit: str = ""

    @property
    def passed(self) -> bool:
        return self.limit_s is None or self.seconds <= self.limit_s


@dataclass
class Rehearsal:
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def timed(self, operation: str, limit_s: float | None = None, limit: str = ""):
        return _Timer(self, operation, limit_s, limit)


class _Timer:
    """``with rehearsal.timed(...) as t: ...; t.count = n`` appends a row."""

    def __init__(self, rehearsal: Rehearsal, operation: str, limit_s: float | None, limit: str):
        self.rehearsal, self.operation, self.limit_s, self.limit, self.count = rehearsal, operation, limit_s, limit, 0

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            seconds = time.perf_counter() - self.start
            self.rehearsal.rows.append(Row(self.operation, self.count, seconds, self.limit_s, self.limit))


# --- PostgreSQL --------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    """Create an empty database on the server of ``dsn``; yield its URL; drop it afterwards."""
    name = f"modelrec_rehearsal_{int(time.time())}_{os.getpid()}_{secrets.token_hex(2)}"
    base = dsn.rstrip("/")
    _admin(f"{base}/postgres", f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        _admin(f"{base}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(url: str, statement: str) -> None:
    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def postgres_instance(home: Path, database_url: str) -> DagsterInstance:
    """A Dagster instance whose run, event-log and schedule storage is the database (psycopg2 driver)."""
    url = database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    config = {"storage": {"postgres": {"postgres_url": url}}, "telemetry": {"enabled": False}}
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(str(home))


# --- stand-ins ---------------------------------------------------------------------------------


def make_standin_zoo(folder: Path, start: int, count: int) -> None:
    """``count`` EMPTY stand-in checkpoint files (the sensor only stats them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (folder / f"standin_model_{i:06d}.safetensors").touch()


def make_standin_datasets(folder: Path, count: int) -> None:
    """``count`` EMPTY stand-in dataset folders (a ``train`` split folder each, no image)."""
    for i in range(count):
        (folder / f"standin_dataset_{i:05d}" / "train").mkdir(parents=True, exist_ok=True)


def _ref(asset_name: str, key: str | None, content_hash: str) -> dict[str, Any]:
    return {"asset": asset_name, "partition": key, "cache_key": content_hash[:16], "content_hash": content_hash}


def seed_standin_store(store: ArtifactStore, keys: list[str]) -> int:
    """STAND-IN refs and manifests: an autoencoder, each model's parameters and embedding; every
    :data:`STALE_EVERY`-th embedding records an older autoencoder. Returns how many are stale."""
    autoencoder, older = secrets.token_hex(32), secrets.token_hex(32)
    write_json(store.ref_path("autoencoder", None), _ref("autoencoder", None, autoencoder))
    stale = 0
    for i, key in enumerate(tqdm(keys, desc="stand-in store", unit="model", mininterval=5)):
        params, embedding = secrets.token_hex(32), secrets.token_hex(32)
        write_json(store.ref_path("model_parameters", key), _ref("model_parameters", key, params))
        ref = _ref("model_embeddings", key, embedding)
        write_json(store.ref_path("model_embeddings", key), ref)
        built_from = older if i % STALE_EVERY == 0 else autoencoder
        stale += built_from == older
        write_manifest(store.artifact_dir("model_embeddings", key, ref["cache_key"]),
                       {"inputs": {"autoencoder": built_from, "model_parameters": params}})
    return stale


def _cheap_asset():
    @asset(
        name="rehearsal_cheap_partitions",
        partitions_def=DynamicPartitionsDefinition(name=MODELS),
        backfill_policy=BackfillPolicy.single_run(),
        description="Rehearsal only: a trivial asset over the model partitions (one run covers a range).",
    )
    def cheap(context) -> MaterializeResult:  # (an annotation would be a string here: future import)
        return MaterializeResult(metadata={"partitions": len(context.partition_keys)})

    return cheap


with warnings.catch_warnings():  # backfill_policy is a beta parameter: its warning says nothing here
    warnings.simplefilter("ignore", BetaWarning)
    rehearsal_cheap_partitions = _cheap_asset()


# --- the staleness query on S3 (moto's server on loopback) ------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (its own process group, stopped by its PID); yields its URL while
    the ``AWS_*`` variables of this process point at it (stand-in credentials), restored afterwards."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("moto's S3 server did not start")
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        standin = {"AWS_ACCESS_KEY_ID": "standin", "AWS_SECRET_ACCESS_KEY": "standin",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url}
        saved = {name: os.environ.get(name) for name in standin}
        os.environ.update(standin)
        try:
            yield url
        finally:  # the variables as they were: nothing else in this process talks to the stand-in server
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def upload_folder(folder: Path, bucket: str, prefix: str) -> None:
    """Every file under ``folder`` to ``s3://bucket/prefix/...`` (boto3, a few threads)."""
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    files = [f for f in folder.rglob("*") if f.is_file()]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda f: client.put_object(Bucket=bucket, Key=f"{prefix}/{f.relative_to(folder).as_posix()}",
                                                  Body=f.read_bytes()), files))


def rehearse_s3_staleness(work: Path, models: int, total_models: int) -> Rehearsal:
    """The staleness query over ``models`` stand-in models in S3, one thread against the pool."""
    r = Rehearsal()
    keys = [f"standin_model_{i:06d}" for i in range(models)]
    local = ArtifactStore(root=str(work / "s3-seed"))
    expected = seed_standin_store(local, keys)
    limit_s = TICK_LIMIT_S * models / total_models
    limit = f"{limit_s:.1f} s (60 s scaled to {models:,} of {total_models:,})"
    with moto_s3():
        upload_folder(Path(local.root), "rehearsal", "artifacts")
        store = ArtifactStore(root="s3://rehearsal/artifacts")
        for threads in (1, READ_THREADS):
            with r.timed(f"staleness of {models:,} models on S3 (moto, loopback), {threads} thread(s)",
                         limit_s, limit) as t:
                t.count = len(stale_model_embeddings(store, keys, threads=threads))
        with instance_for_test() as instance:  # the schedule's resume position lives in an instance
            instance.add_dynamic_partitions(MODELS, keys)
            with r.timed(f"re-embedding schedule tick on S3 (sweep budget {SWEEP_BUDGET_SECONDS:.0f} s), "
                         f"{models:,} models: models checked", TICK_LIMIT_S, f"{TICK_LIMIT_S:.0f} s (schedule tick)") as t:
                reembed_stale_models(build_schedule_context(instance=instance, resources={"store": store}))
                resume = instance.run_storage.get_cursor_values({RESUME_KEY}).get(RESUME_KEY)
                t.count = bisect_left(keys, resume) if resume else models
    r.facts["s3_seeded_stale"] = expected
    return r


# --- the rehearsal -----------------------------------------------------------------------------


def _tick(instance: DagsterInstance, cursor: str | None, zoo: ModelZoo, store: ArtifactStore):
    return model_zoo_sensor(build_sensor_context(instance=instance, cursor=cursor,
                                                 resources={"zoo": zoo, "store": store}))


def _materialize(instance: DagsterInstance, tags: dict[str, str] | None = None, partition_key: str | None = None):
    result = materialize([rehearsal_cheap_partitions], instance=instance, tags=tags, partition_key=partition_key,
                         run_config=QUIET)
    assert result.success
    return result


def rehearse(instance: DagsterInstance, work: Path, *, models: int, new_models: int, datasets: int,
             run_partitions: int, progress: Callable[[str], None] = lambda _: None) -> Rehearsal:
    """Every operation of the rehearsal against ``instance``, with stand-ins under ``work``."""
    r = Rehearsal()
    zoo_dir, datasets_dir = work / "zoo", work / "datasets"
    make_standin_zoo(zoo_dir, 0, models)
    make_standin_datasets(datasets_dir, datasets)
    zoo, catalog = ModelZoo(root=str(zoo_dir), manifest=None), DatasetCatalog(root=str(datasets_dir))
    store = ArtifactStore(root=str(work / "artifacts"))
    tick = f"{TICK_LIMIT_S:.0f} s (sensor tick)"

    progress("registering partitions")
    with r.timed(f"register {models:,} models + {datasets:,} datasets (partitions)") as t:
        registration = register_partitions(instance, zoo, catalog)
        t.count = len(registration.added_models) + len(registration.added_datasets)

    progress("sensor ticks")
    with r.timed(f"zoo sensor, first tick over {models:,} files (records the cursor)", TICK_LIMIT_S, tick) as t:
        first = _tick(instance, None, zoo, store)
        t.count = models
    r.facts["first_tick_run_requests"] = len(first.run_requests or [])
    with r.timed(f"zoo sensor, steady tick over {models:,} files (no change)", TICK_LIMIT_S, tick) as t:
        steady = _tick(instance, first.cursor, zoo, store)
        t.count = models
    r.facts["steady_tick_run_requests"] = len(steady.run_requests or [])
    r.facts["cursor_bytes"] = len(steady.cursor or "")
    recorded = previous_fingerprints(instance, "model_zoo_sensor", steady.cursor, {})  # from the key-value store
    r.facts["recorded_files"] = len(recorded or {})
    r.facts["fingerprints_bytes"] = len(json.dumps(recorded, separators=(",", ":")))  # the cursor before fp1

    make_standin_zoo(zoo_dir, models, new_models)
    with r.timed(f"zoo sensor, tick with {new_models:,} new models", TICK_LIMIT_S, tick) as t:
        arrival = _tick(instance, steady.cursor, zoo, store)
        t.count = len(arrival.run_requests or [])
    added = [k for req in arrival.dynamic_partitions_requests for k in req.partition_keys]
    with r.timed(f"register the tick's {len(added):,} new model partitions", TICK_LIMIT_S, tick) as t:
        instance.add_dynamic_partitions(MODELS, added)  # what the daemon does with the tick's request
        t.count = len(added)
    r.facts["new_model_run_requests"] = len(arrival.run_requests or [])

    progress("listing partitions")
    with r.timed("list the model partitions", TICK_LIMIT_S, "60 s (read inside every tick)") as t:
        keys = instance.get_dynamic_partitions(MODELS)
        t.count = len(keys)
    with r.timed("list the dataset partitions", TICK_LIMIT_S, "60 s (read inside every tick)") as t:
        t.count = len(instance.get_dynamic_partitions("datasets"))

    progress("seeding the stand-in artifact store")
    r.facts["seeded_stale"] = seed_standin_store(store, keys[:models]) + (len(keys) - models)  # + the new: missing
    progress("the re-embedding schedule")
    with r.timed(f"re-embedding schedule tick (staleness of {len(keys):,} models)", TICK_LIMIT_S,
                 f"{TICK_LIMIT_S:.0f} s (schedule tick)") as t:
        scheduled = reembed_stale_models(build_schedule_context(instance=instance, resources={"store": store}))
        t.count = len(list(scheduled)) if isinstance(scheduled, list) else 0

    progress("runs")
    baseline_keys = keys[-BASELINE_RUNS:]
    start = time.perf_counter()
    for key in baseline_keys:
        _materialize(instance, partition_key=key)
    per_run = (time.perf_counter() - start) / BASELINE_RUNS
    r.facts["seconds_per_single_partition_run"] = per_run
    ranged = keys[:run_partitions]
    as_runs = per_run * len(ranged)
    with r.timed(f"one run over {len(ranged):,} partitions (single_run backfill policy)", as_runs,
                 f"{as_runs:.0f} s = {len(ranged):,} runs x {per_run:.2f} s measured") as t:
        _materialize(instance, tags={"dagster/asset_partition_range_start": ranged[0],
                                     "dagster/asset_partition_range_end": ranged[-1]})
        materialized = instance.get_materialized_partitions(AssetKey("rehearsal_cheap_partitions"))
        t.count = len(materialized & set(ranged))
    return r


def format_table(rows: list[Row]) -> str:
    lines = ["| operation | count | seconds | limit | pass |", "| --- | ---: | ---: | --- | --- |"]
    for row in rows:
        verdict = "pass" if row.passed else "FAIL"
        lines.append(f"| {row.operation} | {row.count:,} | {row.seconds:.2f} | {row.limit or '-'} | {verdict} |")
    return "\n".join(lines)


@click.command(help=__doc__.splitlines()[0])
@click.option("--dsn", default=setting("MODELREC_REHEARSAL_DSN", "postgresql://postgres@127.0.0.1:5432"),
              show_default=True, help="PostgreSQL server (libpq URL, no database): a fresh database is made there")
@click.option("--models", default=10_000, show_default=True)
@click.option("--new-models", default=1_000, show_default=True, help="arriving in one sensor tick")
@click.option("--datasets", default=1_000, show_default=True)
@click.option("--run-partitions", default=1_000, show_default=True, help="partitions in the one ranged run")
@click.option("--s3-models", default=0, show_default=True,
              help="also time the staleness query over this many models in S3 (moto's server on loopback)")
def main(dsn: str, models: int, new_models: int, datasets: int, run_partitions: int, s3_models: int) -> None:
    with fresh_database(dsn) as database, tempfile.TemporaryDirectory(prefix="modelrec-rehearsal-") as tmp:
        instance = postgres_instance(Path(tmp) / "dagster_home", database)
        try:
            result = rehearse(instance, Path(tmp), models=models, new_models=new_models, datasets=datasets,
                              run_partitions=run_partitions, progress=lambda s: click.echo(f"... {s}", err=True))
        finally:
            instance.dispose()
        if s3_models:
            click.echo("... the staleness query on S3", err=True)
            s3 = rehearse_s3_staleness(Path(tmp), s3_models, models + new_models)
            result.rows += s3.rows
    click.echo(f"PostgreSQL instance (a fresh database), STAND-IN files and artifacts, this machine; "
               f"{models:,} models + {new_models:,} new, {datasets:,} datasets")
    click.echo(format_table(result.rows))
    facts = result.facts
    click.echo(f"sensor cursor: {facts['cursor_bytes']:,} bytes at {models:,} files (their fingerprints, "
               f"{facts['fingerprints_bytes']:,} bytes, in the instance's key-value store, written on change); "
               f"the new-models tick requested {facts['new_model_run_requests']:,} runs; "
               f"a single-partition run costs {facts['seconds_per_single_partition_run']:.2f} s here")


if __name__ == "__main__":
    main()
