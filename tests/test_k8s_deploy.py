"""deploy/k8s: the Helm values, the k8s executor and MODELREC_EXECUTOR, checked by Dagster's own config schema.

No Kubernetes cluster (nor helm) exists here, so nothing is deployed: the instance section the Dagster
chart renders from ``values.yaml`` is rebuilt by :func:`chart_instance`, following the chart's
templates for the parts these values use (``configmap-instance.yaml``, ``helpers/instance/
_run-launcher.tpl``, ``_postgresql.tpl``, ``_run-coordinator.tpl`` of chart 1.13), then validated by
Dagster: the instance schema, and each class's own ``config_type()`` with its environment variables
resolved. The chart's values schema (``values.schema.json``) is not available offline (dagster-k8s
ships none), so the values' own keys are checked only by what the rendering reads.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import validate_run_config
from dagster._config import process_config, validate_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

from pipelines import executors
from pipelines.definitions import build_definitions

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
RELEASE_NAMESPACE = "modelrec"
#: the variables the chart sets on its pods, which the rendered instance reads
CHART_ENV = {
    "DAGSTER_HOME": "/opt/dagster/dagster_home",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "modelrec-dagster-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "modelrec-postgresql",
    "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "modelrec-dagster-pipeline-env",
    "DAGSTER_PG_PASSWORD": "a-password-from-the-secret",
}


def load_values() -> dict[str, Any]:
    return yaml.safe_load((K8S / "values.yaml").read_text())


def chart_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The instance (dagster.yaml) the chart renders for ``values``: run launcher, storages, coordinator."""
    pg = values["postgresql"]
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg["postgresqlParams"],
    }
    if pg.get("postgresqlScheme"):
        postgres_db["scheme"] = pg["postgresqlScheme"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or RELEASE_NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": "modelrec-dagster",
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}]
        + [c["name"] for c in k8s["envConfigMaps"] if "name" in c],
    }
    if k8s.get("envSecrets"):
        launcher["env_secrets"] = [s["name"] for s in k8s["envSecrets"] if "name" in s]
    for key, field in (("envVars", "env_vars"), ("volumeMounts", "volume_mounts"), ("volumes", "volumes")):
        if k8s.get(key):
            launcher[field] = k8s[key]
    instance = {
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        **{
            section: {"module": module, "class": cls, "config": {"postgres_db": copy.deepcopy(postgres_db)}}
            for section, module, cls in (
                ("run_storage", "dagster_postgres.run_storage", "PostgresRunStorage"),
                ("event_log_storage", "dagster_postgres.event_log", "PostgresEventLogStorage"),
                ("schedule_storage", "dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
            )
        },
        "telemetry": {"enabled": values.get("telemetry", {}).get("enabled", True)},
    }
    daemon = values["dagsterDaemon"]
    if daemon["enabled"] and daemon["runCoordinator"]["enabled"]:
        assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
        queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
        instance["run_coordinator"] = {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": queued["maxConcurrentRuns"]},
        }
    return instance


def check_instance(instance: dict[str, Any], tmp_path: Path) -> None:
    """Raise DagsterInvalidConfigError unless Dagster accepts the instance yaml and every class's config."""
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    dagster_instance_config(str(tmp_path))
    for section in ("run_launcher", "run_storage", "event_log_storage", "schedule_storage", "run_coordinator"):
        data = instance[section]
        cls = getattr(importlib.import_module(data["module"]), data["class"])
        result = process_config(cls.config_type(), data["config"])
        if not result.success:
            raise DagsterInvalidConfigError(f"{section}: {data['class']}", result.errors, data["config"])


@pytest.fixture
def chart_env(monkeypatch):
    for name, value in CHART_ENV.items():
        monkeypatch.setenv(name, value)


def test_the_rendered_instance_is_accepted_by_dagster(tmp_path, chart_env):
    instance = chart_instance(load_values())
    check_instance(instance, tmp_path)
    launcher = instance["run_launcher"]["config"]
    assert "modelrec-aws" in launcher["env_secrets"]  # the run pods get the S3 credentials from the Secret
    assert instance["run_storage"]["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


@pytest.mark.parametrize(
    "break_values",
    [
        lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].update(loadInclusterConfig="yes"),  # not a bool
        lambda v: v["postgresql"]["service"].update(port="five thousand"),  # not an int
        lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].update(volumeMounts=[{"mountPath": "/x"}]),  # no name
        lambda v: v["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"].update(maxConcurrentRuns="all"),
    ],
    ids=["launcher-bool", "postgres-port", "volume-mount", "coordinator-int"],
)
def test_a_broken_copy_of_the_values_is_rejected(tmp_path, chart_env, break_values):
    values = load_values()
    break_values(values)
    with pytest.raises(DagsterInvalidConfigError):
        check_instance(chart_instance(values), tmp_path)


def test_an_unset_chart_variable_is_rejected(tmp_path, chart_env, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")  # the password comes only from the Secret's variable
    with pytest.raises(DagsterInvalidConfigError):
        check_instance(chart_instance(load_values()), tmp_path)


def test_no_secret_is_written_in_the_values():
    values = load_values()
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    names = {e["name"] for e in deployment["env"]}
    assert not {n for n in names if n.startswith("AWS_") or "PASSWORD" in n or "SECRET" in n}
    assert {"name": "modelrec-aws"} in deployment["envSecrets"]
    assert {"MODELREC_ARTIFACT_ROOT", "MODELREC_EXECUTOR"} <= names
    root = next(e["value"] for e in deployment["env"] if e["name"] == "MODELREC_ARTIFACT_ROOT")
    assert root.startswith("s3://")
    for name in ("MODELREC_ZOO_DIR", "MODELREC_DATASETS_DIR"):  # no absolute paths in config
        assert not next(e["value"] for e in deployment["env"] if e["name"] == name).startswith("/")


def test_the_image_serves_the_module_the_values_name():
    (deployment,) = load_values()["dagster-user-deployments"]["deployments"]
    dockerfile = (K8S / "Dockerfile").read_text()
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("-m") + 1]
    assert f'"-m", "{module}"' in dockerfile
    importlib.import_module(module)
    assert "'.[cluster]'" in dockerfile and "download.pytorch.org/whl/cpu" in dockerfile


def test_the_k8s_executor_config_is_accepted_and_a_broken_copy_rejected():
    from dagster_k8s import k8s_job_executor

    schema = k8s_job_executor.config_schema.config_type
    config = executors.k8s_executor_config()
    assert validate_config(schema, config).success
    broken = copy.deepcopy(config) | {"max_concurent": 4}  # a misspelt key
    assert not validate_config(schema, broken).success
    wrong_type = copy.deepcopy(config) | {"max_concurrent": "four"}
    assert not validate_config(schema, wrong_type).success


def test_modelrec_executor_selects_the_executor_of_every_job(monkeypatch):
    monkeypatch.setenv("MODELREC_EXECUTOR", "k8s")
    defs = build_definitions()
    jobs = [defs.resolve_job_def(name) for name in ("embed_models", "dataset_tokens_job", "train", "recommend")]
    assert {job.executor_def.name for job in jobs} == {"k8s"}
    resolved = validate_run_config(jobs[0], {})  # the executor.yaml config, resolved through the job's schema
    assert resolved["execution"]["k8s"]["max_concurrent"] == executors.k8s_executor_config()["max_concurrent"]
    monkeypatch.setenv("MODELREC_EXECUTOR", "in_process")
    assert build_definitions().resolve_job_def("embed_models").executor_def.name == "in_process"
    monkeypatch.delenv("MODELREC_EXECUTOR")
    assert build_definitions().resolve_job_def("embed_models").executor_def.name != "k8s"  # Dagster's default
    with pytest.raises(ValueError, match="MODELREC_EXECUTOR='kubernetes'"):
        executors.executor_for("kubernetes")
