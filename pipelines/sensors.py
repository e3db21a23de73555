"""Sensors: new models and new datasets become partitions and get embedded / tokenised.

* ``model_zoo_sensor`` watches the zoo folder (and manifest). A new checkpoint becomes a
  ``models`` partition and one run flattens and embeds exactly that model (only flattens it
  while no autoencoder exists yet). A replaced checkpoint (size or mtime changed) is re-run; its
  content hash decides whether anything is recomputed. A removed checkpoint's partition is
  deleted on purpose, so the ranker and the recommendations stop offering a model that is gone;
  its artifacts stay in the store (content-addressed) and come back as cache hits if it returns.
* ``dataset_catalog_sensor`` does the same for dataset folders and ``dataset_tokens``.
* ``results_sensor`` watches the results folder (``MODELREC_RESULTS_DIR``): a new or changed
  ``*.csv`` / ``*.json`` requests one ``ingest_results`` run, which validates the new files and appends
  them to ``result_history``. It retrains nothing: ``ground_truth_ranks`` and ``ranking_transformer``
  are materialized by the user (the ``train`` job), on purpose.
* ``recommendations_automation`` evaluates ``model_recommendations``' automation condition:
  the recommendations refresh once new embeddings, tokens or a new ranker have landed.

A tick only lists the folder and ``stat``s each file (the files' fingerprints are kept in the
instance's key-value store, the cursor is their digest: :mod:`pipelines.sensor_cursor`), so it stays far inside Dagster's sensor time
limit for thousands of files. Only a checkpoint whose size or mtime changed is hashed, to ask the
runner's plan (:mod:`pipelines.plan`) whether its ``model_parameters`` would change: a touched or
byte-identical copy gets no run (within a time budget per tick; past it, a run is requested, which is
always safe: the run is then a cache hit).
"""

import time

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from assets.model_parameters import model_parameters  # the asset whose cache key decides a replaced file
from assets.shared.partitions import DATASETS, MODELS, datasets_partitions, models_partitions
from pipelines.automation_settings import sensor_status
from pipelines.folder_watch import FolderChanges, diff_folder, file_fingerprint
from pipelines.jobs import dataset_tokens_job, embed_models_job, flatten_models_job, ingest_results_job
from pipelines.plan import plan_stage
from pipelines.sensor_cursor import previous_fingerprints, record_fingerprints
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from resources.results_folder import ResultsFolder

PLAN_BUDGET_SECONDS = 20.0  # of Dagster's 60 s per tick: hashing replaced checkpoints to skip unchanged ones


def _partition_requests(partitions_def, changes: FolderChanges) -> list:
    requests = []
    if changes.new:
        requests.append(partitions_def.build_add_request(changes.new))
    if changes.removed:
        requests.append(partitions_def.build_delete_request(changes.removed))
    return requests


def _describe(changes: FolderChanges, shown: int = 10) -> str:
    parts = []
    for name, keys in (("new", changes.new), ("changed", changes.changed), ("removed", changes.removed)):
        if keys:
            more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
            parts.append(f"{len(keys)} {name}: {keys[:shown]}{more}")
    return "; ".join(parts)


def _fingerprint_tag(fingerprint: list) -> str:
    return "-".join(str(v) for v in fingerprint)


def _unchanged_content(context: SensorEvaluationContext, keys: list[str], zoo: ModelZoo,
                       store: ArtifactStore) -> list[str]:
    """The replaced checkpoints whose ``model_parameters`` the plan finds fresh (same bytes, same
    settings), planned until :data:`PLAN_BUDGET_SECONDS` are spent."""
    start, fresh = time.perf_counter(), []
    for key in keys:
        if time.perf_counter() - start > PLAN_BUDGET_SECONDS:
            break
        (plan,) = plan_stage(context.instance, model_parameters, [key], resources={"store": store, "zoo": zoo},
                             op_config=None, registered={})
        if not plan.run:
            fresh.append(key)
    return fresh


@sensor(
    jobs=[embed_models_job, flatten_models_job],
    minimum_interval_seconds=30,
    default_status=sensor_status(),
    description="New or replaced checkpoints in the zoo: add the partition, flatten and embed that model only.",
)
def model_zoo_sensor(context: SensorEvaluationContext, zoo: ModelZoo, store: ArtifactStore) -> SensorResult:
    current = {e.key: [*file_fingerprint(e.path), e.architecture or ""] for e in zoo.entries()}
    previous = previous_fingerprints(context.instance, "model_zoo_sensor", context.cursor, current)
    changes = diff_folder(current, previous, set(context.instance.get_dynamic_partitions(MODELS)))
    has_autoencoder = context.instance.get_latest_materialization_event(AssetKey("autoencoder")) is not None
    job = embed_models_job if has_autoencoder else flatten_models_job
    unchanged = _unchanged_content(context, changes.changed, zoo, store)
    if unchanged:
        context.log.info(f"models: {len(unchanged)} touched but unchanged checkpoint(s), no run: {unchanged[:10]}")
    runs = [
        RunRequest(
            partition_key=key,
            job_name=job.name,
            run_key=f"{key}:{_fingerprint_tag(current[key])}",
            tags={"modelrec/reason": "new model" if key in changes.new else "checkpoint replaced"},
        )
        for key in changes.new + changes.changed
        if key not in unchanged
    ]
    if changes.new or changes.changed or changes.removed:
        context.log.info(f"models: {_describe(changes)}")
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=_partition_requests(models_partitions, changes),
        cursor=record_fingerprints(context.instance, "model_zoo_sensor", context.cursor, current),
    )


@sensor(
    job=dataset_tokens_job,
    minimum_interval_seconds=30,
    default_status=sensor_status(),
    description="New dataset folders: add the partition and compute that dataset's tokens.",
)
def dataset_catalog_sensor(context: SensorEvaluationContext, catalog: DatasetCatalog) -> SensorResult:
    current = {e.key: [e.name] for e in catalog.entries()}
    previous = previous_fingerprints(context.instance, "dataset_catalog_sensor", context.cursor, current)
    changes = diff_folder(current, previous, set(context.instance.get_dynamic_partitions(DATASETS)))
    runs = [RunRequest(partition_key=key, run_key=f"tokens:{key}") for key in changes.new]
    if changes.new or changes.removed:
        context.log.info(f"datasets: {_describe(changes)}")
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=_partition_requests(datasets_partitions, changes),
        cursor=record_fingerprints(context.instance, "dataset_catalog_sensor", context.cursor, current),
    )


@sensor(
    job=ingest_results_job,
    minimum_interval_seconds=30,
    default_status=sensor_status(),
    description="New or changed result files (*.csv, *.json) in the results folder: validate them and append them "
    "to result_history (one run per change; retraining stays a deliberate step).",
)
def results_sensor(context: SensorEvaluationContext, results: ResultsFolder) -> SensorResult:
    # settled files only: one still being written is not recorded, so a later tick sees it as new
    current = {path.name: file_fingerprint(path) for path in results.files()}
    if unsettled := results.unsettled():
        context.log.info(f"results: {len(unsettled)} file(s) modified in the last {results.settle_seconds:g} s, "
                         f"left for a later tick: {[p.name for p in unsettled[:10]]}")
    previous = previous_fingerprints(context.instance, "results_sensor", context.cursor, current)
    # a first tick (no cursor) requests a run when there are files: the run skips what was ingested
    changed = sorted(k for k in current if previous is None or list(previous.get(k, [])) != list(current[k]))
    cursor = record_fingerprints(context.instance, "results_sensor", context.cursor, current)
    runs = []
    if changed:
        context.log.info(f"results: {len(changed)} new or changed file(s): {changed[:10]}"
                         + (f" (+{len(changed) - 10} more)" if len(changed) > 10 else ""))
        runs.append(RunRequest(run_key=f"results:{cursor}", tags={"modelrec/reason": "new results"}))
    return SensorResult(run_requests=runs, cursor=cursor)


recommendations_automation = AutomationConditionSensorDefinition(
    "recommendations_automation",
    target=AssetSelection.assets("model_recommendations"),
    default_status=sensor_status(),
    minimum_interval_seconds=30,
    description="Refresh each dataset's recommendations when embeddings, tokens or the ranker change.",
)

ALL_SENSORS = [model_zoo_sensor, dataset_catalog_sensor, results_sensor, recommendations_automation]
