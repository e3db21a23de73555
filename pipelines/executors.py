"""Which executor runs the steps of the graph's jobs: the ``MODELREC_EXECUTOR`` setting, mapped here.

* unset: Dagster's default (multiprocess, or in-process for a single step), as on one machine;
* ``in_process`` / ``multiprocess``: Dagster's own executors, named explicitly;
* ``celery``: every step a task on Celery workers (``dagster_celery.celery_executor``), configured by
  ``deploy/cluster/celery.yaml``, the same file the workers start from, so the two sides cannot
  disagree; broker and backend from ``MODELREC_CELERY_BROKER`` / ``MODELREC_CELERY_BACKEND``;
* ``k8s``: every step a Kubernetes Job (``dagster_k8s.k8s_job_executor``), configured by
  ``deploy/k8s/executor.yaml`` (its ``execution.config``, fixed when the code location loads).

The setting is read in ``resources/settings.py``; :func:`executor_for` is what ``Definitions`` gets.
On the executors whose steps run in other processes or machines (Celery, k8s), the graph's jobs get
:data:`TRANSIENT_RETRY` (:func:`step_retry_policy`). The runner (``materialize_all``) launches one run per
stage and partition under the stage's named job (:mod:`pipelines.jobs`); on Celery each run's job is one a
worker can rebuild from this module (:func:`named_job`, reconstructable by name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from dagster import (
    AssetKey,
    Backoff,
    DagsterInstance,
    ExecutorDefinition,
    JobDefinition,
    RetryPolicy,
    execute_job,
    in_process_executor,
    multiprocess_executor,
)
from dagster._core.definitions.reconstruct import build_reconstructable_job

from resources import settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
#: the k8s_job_executor's configuration, beside the Helm values (``deploy/k8s/values.yaml``)
K8S_EXECUTOR_CONFIG = DEPLOY / "k8s" / "executor.yaml"
#: the Celery executor's configuration, read by the jobs and by ``dagster-celery worker start -y``
CELERY_CONFIG_FILE = DEPLOY / "cluster" / "celery.yaml"

#: A step that fails (an object-store or database error that may be transient, a lost worker) runs again,
#: twice at most, after 2 then 4 seconds. Safe because publication is idempotent: a retry of a step whose
#: artifact was published finds it (a cache hit), and a half-written one was never published.
TRANSIENT_RETRY = RetryPolicy(max_retries=2, delay=2.0, backoff=Backoff.EXPONENTIAL)
#: executors whose steps run in other processes or machines, where a failure may be transient
REMOTE_EXECUTORS = ("celery", "k8s")


def execution_config(path: Path) -> dict[str, Any]:
    """The ``execution.config`` section of an executor's YAML file."""
    document = yaml.safe_load(path.read_text()) or {}
    return dict((document.get("execution") or {}).get("config") or {})


def k8s_executor_config(path: Path = K8S_EXECUTOR_CONFIG) -> dict[str, Any]:
    """The k8s executor's ``execution.config``."""
    return execution_config(path)


def celery_config(path: Path = CELERY_CONFIG_FILE) -> dict[str, Any]:
    """The Celery executor's ``execution.config``, with the broker and backend from the environment."""
    return execution_config(path) | {"broker": settings.celery_broker(), "backend": settings.celery_backend()}


def _k8s() -> ExecutorDefinition:
    from dagster_k8s import k8s_job_executor  # the cluster extra: imported only when selected

    return k8s_job_executor.configured(k8s_executor_config(), name="k8s")


def _celery() -> ExecutorDefinition:
    from dagster_celery import celery_executor  # the cluster extra: imported only when selected

    return celery_executor.configured(celery_config(), name="celery")


#: setting -> executor (None: Dagster's default)
EXECUTORS: dict[str, Callable[[], ExecutorDefinition | None]] = {
    "": lambda: None,
    "default": lambda: None,
    "in_process": lambda: in_process_executor,
    "multiprocess": lambda: multiprocess_executor,
    "celery": _celery,
    "k8s": _k8s,
}


def executor_for(kind: str) -> ExecutorDefinition | None:
    """The executor for a ``MODELREC_EXECUTOR`` value; a ValueError names the known ones."""
    try:
        make = EXECUTORS[kind]
    except KeyError:
        known = ", ".join(k for k in EXECUTORS if k)
        raise ValueError(f"MODELREC_EXECUTOR={kind!r}: unknown executor (known: {known})") from None
    return make()


def graph_executor() -> ExecutorDefinition | None:
    """The executor of the graph's jobs, from ``MODELREC_EXECUTOR``."""
    return executor_for(settings.executor_kind())


def step_retry_policy() -> RetryPolicy | None:
    """The graph's jobs' step retry policy: :data:`TRANSIENT_RETRY` on Celery and k8s; none locally (a failed
    step there is a bad input, reported at once). Read when :mod:`pipelines.jobs` is imported: each process
    of a cluster (webserver, daemon, workers) starts with ``MODELREC_EXECUTOR`` set."""
    return TRANSIENT_RETRY if settings.executor_kind() in REMOTE_EXECUTORS else None


def named_job(name: str) -> JobDefinition:
    """One of the graph's named jobs (:mod:`pipelines.jobs`), resolved from the code location with the graph's
    executor and the resources from the environment: what a worker rebuilds to run a step of
    :func:`launch_stage`'s runs."""
    from pipelines.definitions import build_definitions  # imports pipelines.jobs, which imports this module

    return build_definitions().resolve_job_def(name)


def stage_selection(asset: str) -> list[AssetKey]:
    """What a run of ``asset`` selects in its named job: the source asset it observes first, if any
    (:data:`pipelines.jobs.OBSERVES`), then the asset."""
    from pipelines.jobs import OBSERVES

    return [*([AssetKey(OBSERVES[asset])] if asset in OBSERVES else []), AssetKey(asset)]


def launch_stage(
    instance: DagsterInstance,
    asset: str,
    partition: str | None,
    run_config: Mapping[str, Any],
    tags: Mapping[str, str],
) -> Any:
    """Run ``asset[partition]`` on ``instance`` under its named job (:data:`pipelines.jobs.JOB_OF_ASSET`, as
    the in-process runner, the sensors and the schedule do), with the graph's executor: on Celery the steps
    run on the workers, which rebuild the job from this module (:func:`named_job`). Returns the run's result
    (``success``, ``all_events``, ``get_asset_materialization_events()``)."""
    from pipelines.jobs import JOB_OF_ASSET

    job = build_reconstructable_job("pipelines.executors", "named_job", reconstructable_args=(JOB_OF_ASSET[asset],))
    run_tags = dict(tags) | ({"dagster/partition": partition} if partition is not None else {})
    return execute_job(job, instance=instance, run_config=dict(run_config), tags=run_tags, raise_on_error=False,
                       asset_selection=stage_selection(asset))
