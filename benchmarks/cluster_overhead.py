"""What the cluster costs and gives, as ratios measured in one run (needs PostgreSQL and RabbitMQ on 127.0.0.1).

1. per-run overhead: the same trivial asset materialized ``--runs`` times in this process on the local
   instance's default sqlite storage and on the cluster's PostgreSQL instance (a fresh database);
2. the REDUCED world's graph up to the measured table (generated; :data:`STAGES`) on 1 and on 2 Celery workers
   (``--concurrency=1`` each), artifacts on S3 (moto's server on loopback), a fresh artifact prefix each
   (every step builds), launched by the runner (``materialize_all(executor="celery")``), which launches one
   run at a time: the second worker can only take the steps of runs that overlap, so the ratio shows what
   the runner's shape gets from more workers, not what runs launched by the daemon would.

    .venv/bin/python -m benchmarks.cluster_overhead
"""

import argparse
import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from dagster import DagsterInstance, asset, materialize
from dagster._core.instance.ref import InstanceRef

from pipelines import cluster
from pipelines.definitions import default_resources, world_env
from pipelines.runner import STAGES, materialize_all
from resources import settings
from worlds import build_world

#: the graph up to the measured performance table (6 of the 12 stages: every partitioned stage but the
#: recommendations), with small training settings; what the workers share out is per-partition work
STAGES = STAGES[:6]
RUN_CONFIG = {"ops": {
    "autoencoder": {"config": {"tokens": {"trainer": {"epochs": 2}, "steps_per_epoch": 6, "val_steps": 2}}},
    "transfer_performance": {"config": {"protocol": {"epochs": 2, "min_steps": 10}}},
}}


@asset
def trivial() -> int:
    return 1


def per_run_seconds(instance: DagsterInstance, runs: int) -> float:
    materialize([trivial], instance=instance)  # warm: tables, imports
    start = time.perf_counter()
    for _ in range(runs):
        assert materialize([trivial], instance=instance).success
    return (time.perf_counter() - start) / runs


def graph_seconds(env: dict[str, str], run_dir: Path, n_workers: int, instance: DagsterInstance) -> tuple[float, int]:
    """The reduced world's graph on ``n_workers`` fresh workers and a fresh artifact prefix."""
    env = env | {"MODELREC_ARTIFACT_ROOT": f"s3://{cluster.DEFAULT_BUCKET}/bench-{uuid.uuid4().hex}"}
    workers = [cluster.start_worker(f"bench{n_workers}-{i}-{uuid.uuid4().hex[:6]}", env, run_dir) for i in range(n_workers)]
    os.environ.update(env)  # this process plans and orchestrates with the workers' settings
    try:
        start = time.perf_counter()
        records = materialize_all(instance, resources=default_resources(), run_config=RUN_CONFIG, stages=STAGES,
                                  executor="celery")
        return time.perf_counter() - start, sum(r.launched for r in records)
    finally:
        for worker in workers:
            cluster.stop_group(worker.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        env = cluster.cluster_env(run_dir) | {"DAGSTER_POSTGRES_DB": f"bench_{uuid.uuid4().hex[:12]}", "TQDM_DISABLE": "1"}
        pg = {k: env[k] for k in settings.postgres_env()}
        s3, aws = cluster.start_s3(run_dir, env)
        env |= aws
        cluster.create_database(pg)
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            sqlite_home = run_dir / "sqlite_home"
            sqlite_home.mkdir()
            sqlite = DagsterInstance.local_temp(str(sqlite_home))
            postgres = DagsterInstance.from_ref(InstanceRef.from_dir(str(cluster.prepare_home(run_dir / "dagster_home"))))
            sqlite_s, postgres_s = per_run_seconds(sqlite, args.runs), per_run_seconds(postgres, args.runs)
            world = build_world(run_dir / "world", scale="reduced", seed=0)
            env |= world_env(world, "")
            one_s, launched = graph_seconds(env, run_dir, 1, postgres)
            two_s, _ = graph_seconds(env, run_dir, 2, postgres)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            cluster.stop_group(s3.pid)
            cluster.drop_database(pg)
    print("this 2-core CPU; PostgreSQL, RabbitMQ, moto's S3 on 127.0.0.1; the REDUCED world (generated)")
    print(f"per run, trivial asset ({args.runs} runs)  sqlite {sqlite_s:6.3f} s   PostgreSQL {postgres_s:6.3f} s   "
          f"PostgreSQL / sqlite = {postgres_s / sqlite_s:.2f}")
    print(f"reduced world, {len(STAGES)} stages ({launched} runs)   1 worker {one_s:6.1f} s   2 workers {two_s:6.1f} s   "
          f"2 / 1 = {two_s / one_s:.2f}")
    print(json.dumps({"sqlite_s_per_run": sqlite_s, "postgres_s_per_run": postgres_s,
                      "graph_1_worker_s": one_s, "graph_2_workers_s": two_s}))


if __name__ == "__main__":
    main()
