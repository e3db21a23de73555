"""Every Dagster config in ``deploy/`` (but the Helm values of ``deploy/k8s``) loads through Dagster's own
config schemas, with each value from the environment; ``MODELREC_EXECUTOR`` selects the jobs' executor."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.runs import SqliteRunStorage
from dagster_celery import celery_executor
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app

from pipelines.executors import TRANSIENT_RETRY, celery_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT_ROOT / "deploy"
INSTANCE_FILES = sorted(DEPLOY.glob("dagster.yaml")) + sorted((DEPLOY / "cluster").glob("dagster.yaml"))
PG_ENV = {"DAGSTER_POSTGRES_HOST": "db.example", "DAGSTER_POSTGRES_PORT": "6543", "DAGSTER_POSTGRES_USER": "dagster",
          "DAGSTER_POSTGRES_PASSWORD": "from-the-environment", "DAGSTER_POSTGRES_DB": "modelrec"}


def test_the_deploy_folder_holds_the_configs_this_module_checks():
    found = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*.yaml") if "k8s" not in p.parts}
    assert found == {"dagster.yaml", "cluster/dagster.yaml", "cluster/celery.yaml"}


@pytest.mark.parametrize("path", INSTANCE_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_instance_files_pass_dagster_s_instance_schema(path, monkeypatch):
    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(path.parent), path.name)
    assert config["telemetry"]["enabled"] is False


def test_the_cluster_instance_is_postgres_queued_and_reads_only_the_environment(monkeypatch):
    text = (DEPLOY / "cluster" / "dagster.yaml").read_text()
    raw = yaml.safe_load(text)
    db = raw["storage"]["postgres"]["postgres_db"]
    assert db.pop("scheme") == "postgresql+psycopg2"  # SQLAlchemy 2.1 would otherwise ask for psycopg 3
    assert all(set(v) == {"env"} for v in db.values()), db  # no literal host, user or password
    assert {v["env"] for v in db.values()} == set(PG_ENV)
    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(DEPLOY / "cluster"), "dagster.yaml")
    processed = process_config(QueuedRunCoordinator.config_type(), raw["run_coordinator"]["config"])
    assert processed.success and processed.value["max_concurrent_runs"] >= 1
    assert raw["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # the env references resolve to the environment's values (the password too, never written in a file)
    from dagster_postgres.utils import get_conn_string, pg_config

    resolved = process_config(pg_config(), config["storage"]["postgres"])
    assert resolved.success, resolved.errors
    url = get_conn_string(**{k: v for k, v in resolved.value["postgres_db"].items() if k != "params"})
    assert url.startswith("postgresql+psycopg2://dagster:from-the-environment@db.example:6543/modelrec")
    assert "from-the-environment" not in text


def test_the_local_instance_stays_sqlite(tmp_path):
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path)))
    try:
        assert isinstance(instance.run_storage, SqliteRunStorage)
    finally:
        instance.dispose()


def test_the_celery_file_passes_the_executor_schema_and_makes_an_app_that_keeps_lost_steps(monkeypatch):
    monkeypatch.setenv("MODELREC_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("MODELREC_CELERY_BACKEND", "redis://127.0.0.1:6379/1")
    raw = yaml.safe_load((DEPLOY / "cluster" / "celery.yaml").read_text())["execution"]["config"]
    processed = process_config(celery_executor.config_schema.config_type, raw)
    assert processed.success, processed.errors
    assert processed.value["broker"] == "redis://127.0.0.1:6379/0"  # from the environment, as the workers read it
    config = celery_config()
    assert (config["broker"], config["backend"]) == (processed.value["broker"], processed.value["backend"])
    app = make_app(CeleryExecutor.for_cli(broker=config["broker"], backend=config["backend"],
                                          config_source=config["config_source"]).app_args())
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost and app.conf.worker_prefetch_multiplier == 1
    assert "enabled" in processed.value["retries"]


def test_the_executor_is_chosen_by_one_setting(monkeypatch):
    from pipelines.definitions import build_definitions

    monkeypatch.delenv("MODELREC_EXECUTOR", raising=False)
    local = build_definitions().resolve_job_def("train")
    assert local.executor_def.name != "celery" and local.op_retry_policy is None
    monkeypatch.setenv("MODELREC_EXECUTOR", "celery")
    definitions = build_definitions()
    for name in ("train", "embed_models", "recommend"):
        job = definitions.resolve_job_def(name)
        assert job.executor_def.name == "celery"
    # the jobs' step retry policy is read at import, as each cluster process starts with the setting
    script = ("from pipelines.definitions import build_definitions; d = build_definitions(); "
              "print(sorted({repr(d.resolve_job_def(n).op_retry_policy) for n in ('train', 'embed_models', 'recommend')}))")
    for value, expected in (("celery", repr(TRANSIENT_RETRY)), ("in_process", "None")):
        out = subprocess.run([sys.executable, "-c", script], env=os.environ | {"MODELREC_EXECUTOR": value},
                             capture_output=True, text=True, check=True, cwd=PROJECT_ROOT).stdout
        assert out.strip().splitlines()[-1] == repr([expected])
    monkeypatch.setenv("MODELREC_EXECUTOR", "kubernetes")
    with pytest.raises(ValueError, match="MODELREC_EXECUTOR='kubernetes'"):
        build_definitions()
