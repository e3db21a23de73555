"""Materialize the whole graph in dependency order, partition by partition, on a Dagster instance.

This is what the main job command runs; the same assets, resources and IO manager as the UI. Before
each stage, :mod:`pipelines.plan` finds the partitions that are fresh (materialized on this instance,
under this code version, from the same config and input content): those get no run at all, so a
second run of an unchanged graph launches nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance
from sqlalchemy.exc import InterfaceError, OperationalError

from assets import ALL_ASSETS
from assets.shared.partitions import DATASETS, MODELS
from ml_core.progress import progress, progress_disabled
from pipelines.definitions import build_definitions, default_resources
from pipelines.executors import launch_stage, stage_selection
from pipelines.jobs import JOB_OF_ASSET
from pipelines.plan import PartitionPlan, plan_stage, single_inputs
from pipelines.registration import register_partitions
from resources import settings

logger = logging.getLogger(__name__)

# (asset, partition dimension or None), in dependency order.
STAGES: tuple[tuple[str, str | None], ...] = (
    ("model_parameters", MODELS),
    ("model_costs", MODELS),
    ("model_source_tokens", MODELS),
    ("autoencoder", None),
    ("model_embeddings", MODELS),
    ("dataset_tokens", DATASETS),
    ("transfer_performance", DATASETS),
    ("result_history", None),
    ("ground_truth_ranks", None),
    ("embedding_probes", None),
    ("ranking_transformer", None),
    ("model_recommendations", DATASETS),
    ("transferability_scores", DATASETS),
    ("ranker_evaluation", None),
)


#: a run whose launch lost the instance's database connection (a dropped PostgreSQL connection, a restart)
#: is launched once more after this pause (seconds). Safe: publication is idempotent (a step that had
#: published finds its artifact, a half-written one was never published, two copies of one key publish one).
DB_RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class PartitionFailure:
    """One partition whose run failed (``reason``: the error's type and first line, which names the
    file or setting at fault), or that was not run because the partition it reads failed."""

    asset: str
    partition: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.asset}[{self.partition or '-'}]: {self.reason}"


class PartitionsFailed(RuntimeError):
    """Raised by :func:`materialize_all` after every stage ran: what failed, and what did not."""

    def __init__(self, failures: list[PartitionFailure], records: list[MaterializationRecord]):
        self.failures, self.records = failures, records
        super().__init__(f"{len(failures)} partition(s) failed: " + "; ".join(str(f) for f in failures[:10]))


def failure_reason(result: Any) -> str:
    """The error of a failed in-process run, in one line: ``Type: first line of its message``, of the
    first exception in the chain that is not Dagster's wrapper (the project's own error, which names
    the file or setting at fault, rather than the low-level error it was raised from)."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause
            lines = (error.message or "").strip().splitlines()  # "package.module.Type: message"
            if not lines:
                return error.cls_name or "unknown error"
            qualified, _, rest = lines[0].partition(":")
            return f"{error.cls_name}:{rest}" if error.cls_name and qualified.endswith(error.cls_name) else lines[0]
    return "the run failed before any step started"


@dataclass(frozen=True)
class MaterializationRecord:
    asset: str
    partition: str | None
    cache_hit: bool
    data_version: str | None
    seconds: float
    launched: bool = True  # False: found fresh by the plan, no run started (a cache hit without a run)


def _asset_run_config(run_config: Mapping[str, Any] | None, asset: str, log_level: str) -> dict[str, Any]:
    """The ``ops`` entry of ``asset`` (if any) plus the console log level."""
    ops = (run_config or {}).get("ops", {})
    config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if asset in ops:
        config["ops"] = {asset: ops[asset]}
    return config


def _log_plan(asset: str, plans: Sequence[PartitionPlan], seconds: float) -> None:
    to_run = [p for p in plans if p.run]
    if not to_run:
        logger.info("%s: %d partition(s) fresh, nothing to do (planned in %.2f s)", asset, len(plans), seconds)
        return
    reasons = Counter(p.reason for p in to_run)
    logger.info("%s: %d of %d partition(s) to run (%s; planned in %.2f s)", asset, len(to_run), len(plans),
                "; ".join(f"{n} {why}" for why, n in reasons.items()), seconds)


def materialize_all(
    instance: DagsterInstance,
    *,
    resources: Mapping[str, Any] | None = None,
    run_config: Mapping[str, Any] | None = None,
    stages: Sequence[tuple[str, str | None]] = STAGES,
    log_level: str = "WARNING",
    only_partitions: Mapping[str, Sequence[str]] | None = None,
    plan: bool = True,
    executor: str | None = None,
) -> list[MaterializationRecord]:
    """Register partitions, then materialize every stage (every partition that is not fresh); returns
    what happened, fresh partitions included (``launched=False``).

    A failed partition spoils only itself: every other partition of every stage still runs (a stage
    that reads all partitions reads those that exist; a partition that reads the failed one is
    skipped), and :class:`PartitionsFailed` is raised at the end with each failure and the records.

    ``run_config`` is a Dagster run config whose ``ops`` entries are passed to the matching asset.
    ``only_partitions`` (``{"models": [...]}``) restricts a partition dimension to those keys.
    ``plan=False`` launches a run for every partition (each still a cache hit when nothing changed).
    ``executor`` (default ``MODELREC_EXECUTOR``): ``in_process`` runs each step in this process with
    ``resources``; ``celery`` launches each run on ``instance`` with the Celery executor
    (:func:`pipelines.executors.launch_stage`): the workers build their resources from their own
    environment, which must describe the same world and store as ``resources``. Runs are launched one
    at a time either way (a run's steps may still run side by side on the workers).
    """
    on_workers = (settings.executor_kind() if executor is None else executor) == "celery"
    resources = dict(resources or default_resources())
    registration = register_partitions(instance, resources["zoo"], resources["catalog"])
    logger.info(
        "partitions: %d models (%d new), %d datasets (%d new)",
        len(registration.models),
        len(registration.added_models),
        len(registration.datasets),
        len(registration.added_datasets),
    )
    records: list[MaterializationRecord] = []
    definitions = {a.key.path[-1]: a for a in ALL_ASSETS}
    jobs = {}  # in this process: the named jobs, resolved once (on workers, launch_stage resolves them there)
    if not on_workers:
        code_location = build_definitions(resources)
        jobs = {name: code_location.resolve_job_def(name) for name in {JOB_OF_ASSET[asset] for asset, _ in stages}}
    registered = {d: sorted(instance.get_dynamic_partitions(d)) for d in (MODELS, DATASETS)}
    failures: list[PartitionFailure] = []
    for asset, dimension in stages:
        keys: list[str | None] = [None] if dimension is None else list(registered[dimension])
        if dimension is not None and only_partitions and dimension in only_partitions:
            keys = [k for k in keys if k in set(only_partitions[dimension])]
        op_config = (run_config or {}).get("ops", {}).get(asset, {}).get("config")
        if plan:
            start = time.perf_counter()
            plans = plan_stage(instance, definitions[asset], keys, resources=resources, op_config=op_config,
                               registered=registered)
            _log_plan(asset, plans, time.perf_counter() - start)
        else:
            plans = [PartitionPlan(asset, key, True, "planning off") for key in keys]
        asset_config = _asset_run_config(run_config, asset, log_level)
        # one run at a time, also on workers: runs launched side by side from threads of this process
        # hung (2026-12-03: 5 runs of one stage, 1 started, no step reached a worker)
        for step in progress(plans, desc=asset, unit="partition", leave=False, disable=progress_disabled() or
                             not any(p.run for p in plans)):
            key = step.partition
            if not step.run:
                records.append(MaterializationRecord(asset, key, True, step.data_version, 0.0, launched=False))
                continue
            blocked = _failed_input(definitions[asset], key, failures)
            if blocked is not None:
                failures.append(PartitionFailure(asset, key, f"not run: its input {blocked} failed"))
                continue
            if on_workers:
                launch, args = launch_stage, (instance, asset, key, asset_config, {"modelrec/stage": asset})
            else:
                launch, args = _launch, (jobs, instance, asset, key, asset_config)
            result, lost = _launch_again_on_a_lost_database(asset, key, launch, *args)
            if result is None or not result.success:
                failures.append(PartitionFailure(asset, key, lost or failure_reason(result)))
                logger.warning("%s", failures[-1])
                continue
            for event in result.get_asset_materialization_events():
                mat = event.materialization
                meta = mat.metadata
                records.append(
                    MaterializationRecord(
                        asset=asset,
                        partition=key,
                        cache_hit=bool(meta["cache_hit"].value) if "cache_hit" in meta else False,
                        data_version=mat.tags.get("dagster/data_version") if mat.tags else None,
                        seconds=float(meta["seconds"].value) if "seconds" in meta else 0.0,
                    )
                )
    if failures:
        raise PartitionsFailed(failures, records)
    return records


def _launch(jobs: Mapping[str, Any], instance: DagsterInstance, asset: str, partition: str | None,
            run_config: Mapping[str, Any]) -> Any:
    """One run of ``asset`` (one partition) under its named job (:data:`pipelines.jobs.JOB_OF_ASSET`), so the
    UI lists it under that job; a stage that reads the user's files first observes them in the same run
    (:data:`pipelines.jobs.OBSERVES`). Returns Dagster's in-process result (never raises on failure)."""
    return jobs[JOB_OF_ASSET[asset]].execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=partition,
        tags={"modelrec/stage": asset},
        raise_on_error=False,
        asset_selection=stage_selection(asset),
    )


def _launch_again_on_a_lost_database(asset: str, partition: str | None, launch: Callable[..., Any],
                                     *args: Any) -> tuple[Any | None, str | None]:
    """``(launch(*args), None)``; when the launch raised the instance's database error (SQLAlchemy's
    OperationalError / InterfaceError: the connection was dropped or refused), the run is launched once
    more after :data:`DB_RETRY_SECONDS`, and a second such error is returned as ``(None, reason)``, one line.
    The run whose orchestration lost the connection may stay STARTED in the instance: the relaunch is a
    new run."""
    reason = ""
    for attempt in range(2):
        try:
            return launch(*args), None
        except (OperationalError, InterfaceError) as error:
            cause = error.orig if error.orig is not None else error
            first = (str(cause).strip().splitlines() or [""])[0]
            reason = f"the Dagster instance's database connection was lost ({type(cause).__name__}: {first})"
            if not attempt:
                logger.warning("%s[%s]: %s; launching its run again in %.0f s", asset, partition or "-", reason,
                               DB_RETRY_SECONDS)
                time.sleep(DB_RETRY_SECONDS)
    return None, reason


def _failed_input(assets_def: Any, partition: str | None, failures: Sequence[PartitionFailure]) -> str | None:
    """The failed partition this partition reads on its own (:func:`pipelines.plan.single_inputs`), if
    any; a failed partition among many read together is only left out of them."""
    failed = {(f.asset, f.partition) for f in failures}
    for upstream, upstream_partition in single_inputs(assets_def, partition).values():
        if (upstream, upstream_partition) in failed:
            return f"{upstream}[{upstream_partition or '-'}]"
    return None
