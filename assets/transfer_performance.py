"""Asset ``transfer_performance``: every zoo model's measured transfer accuracy on one dataset.

Partitioned by dataset. Each (model, dataset) CELL is cached on its own under a key of the
checkpoint's content, the model card, the dataset's content and the protocol: a new model
measures only its own cells, a new dataset only its column, a rerun nothing. The artifact is
JSON in the performance-table format ``{dataset: [{model_name, model_type, accuracy,
trained_on_dataset}]}`` plus the column's spread report (degenerate or not).

``mode="auto"`` (default) measures only when no performance table is configured (the
``performance_table`` resource's path is empty): a user who brings a table pays nothing here.
"""

import hashlib
from typing import Literal

from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    MetadataValue,
)
from upath import UPath

from assets.shared.artifacts import materialize_asset, materialize_cached
from assets.shared.configs import dagster_config
from assets.shared.loaders import CELL_FILE, TRANSFER_TABLE_FILE
from assets.shared.partitions import asset_one_partition_per_run, datasets_partitions
from ml_core.artifacts import stable_json, write_json
from ml_core.ground_truth import (
    TRANSFER_CODE_VERSION,
    LabelledImages,
    MeasurementConfig,
    ZooCell,
    cell_key,
    column_inputs,
    load_split,
    transfer_column,
    transfer_outcome,
    zoo_cells,
)
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from resources.performance_table import PerformanceTableResource

CODE_VERSION = "2"  # 2: one content fingerprint per dataset and per checkpoint
CELL_ASSET = "transfer_cell"
TransferAssetConfig = dagster_config(
    MeasurementConfig(), "TransferAssetConfig",
    extra={"mode": (Literal["auto", "always"], "auto")},  # auto: measure only when no table is given
)


@asset_one_partition_per_run(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    group_name="ground_truth",
    kinds={"pytorch", "json"},
    # the user's files it reads: this dataset's images and every model's checkpoint (the source assets)
    deps=[AssetDep("image_folders"), AssetDep("model_checkpoints", partition_mapping=AllPartitionMapping())],
    check_specs=[AssetCheckSpec("every_model_measured", asset="transfer_performance")],
    description="Transfer accuracy of every zoo model on this dataset by a fixed fine-tuning protocol "
    "(cell-level cache); measured only when no performance table is configured.",
)
def transfer_performance(
    context: AssetExecutionContext,
    config: TransferAssetConfig,
    store: ArtifactStore,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
    performance_table: PerformanceTableResource,
):
    entry = catalog.entry(context.partition_key)
    if config.mode == "auto" and performance_table.path:
        yield from _skipped(context, store, performance_table.path)
        return

    measurement = config.to_ml()
    protocol = measurement.protocol
    dataset_fp = store.fingerprints.folder(entry.path)
    cells = zoo_cells(zoo.entries(), store.fingerprints.file_sha256)
    data: dict[str, LabelledImages] = {}

    def split(name: str) -> LabelledImages:  # decoded once per column, only on a cell miss
        if name not in data:
            classes = split(protocol.train_split).classes if name != protocol.train_split else None
            data[name] = load_split(entry.path, name, classes)
        return data[name]

    def measure(cell: ZooCell) -> tuple[dict, bool]:
        def build(directory: UPath) -> tuple[str, dict]:
            outcome = transfer_outcome(cell, split, protocol)
            write_json(directory / CELL_FILE, outcome)
            context.log.debug(f"{cell.name} on {entry.key}: {outcome}")
            return hashlib.sha256(stable_json(outcome).encode()).hexdigest(), outcome

        result = materialize_cached(
            store, asset=CELL_ASSET, partition=entry.key, code_version=f"{CODE_VERSION}.{TRANSFER_CODE_VERSION}",
            config=config.model_dump()["protocol"],
            inputs={"cell": cell_key(cell.checkpoint_sha256, cell.card, dataset_fp, protocol)},
            build=build, log=None,  # hundreds of cells per run: no per-cell cache messages
        )
        return result.summary, result.cache_hit

    def build(directory: UPath) -> tuple[str, dict]:
        column = transfer_column(cells, measure, measurement.spread)
        table = {entry.name: column.records}
        write_json(directory / TRANSFER_TABLE_FILE, table)
        spread = column.spread.model_dump(mode="json")
        return hashlib.sha256(stable_json([table, spread]).encode()).hexdigest(), {
            "dataset": entry.name,
            "measured": True,
            "protocol": config.model_dump()["protocol"],
            "n_models": len(cells),
            "n_measured": len(column.results),
            "n_cells_cached": column.n_cached,
            "problems": column.problems,
            "spread": spread,
            "results": column.results,
            "best_model": column.best_model,
        }

    result = materialize_asset(
        context, store,
        config={**config.model_dump(exclude={"mode"}), "transfer_code": TRANSFER_CODE_VERSION},
        inputs={"dataset": dataset_fp} | column_inputs(cells), build=build, partition=entry.key,
    )
    s = result.summary
    spread = s["spread"]
    rows = sorted(s["results"].items(), key=lambda kv: -kv[1]["accuracy"])
    table_md = "| model | accuracy | train accuracy | seconds |\n| --- | --- | --- | --- |\n" + "\n".join(
        f"| {m} | {r['accuracy']:.3f} | {r['train_accuracy']:.3f} | {r['seconds']:.2f} |" for m, r in rows
    )
    yield result.output({
        "dataset": entry.name,
        "protocol": s["protocol"]["kind"],
        "n_models": s["n_models"],
        "n_measured": s["n_measured"],
        "n_cells_reused": s["n_cells_cached"],
        "best_model": s["best_model"] or "none",
        "best_accuracy": round(float(spread["best"]), 3) if s["n_measured"] else float("nan"),
        "chance": round(float(spread["chance"]), 3),
        "spread": round(float(spread["spread"]), 3),
        "degenerate": bool(spread["degenerate"]),
        "degenerate_reason": spread["reason"] or "none",
        "accuracies": MetadataValue.md(table_md),
        "unmeasured_models": MetadataValue.json(s["problems"]),
    })
    yield AssetCheckResult(
        check_name="every_model_measured",
        passed=not s["problems"],
        metadata={"n_measured": s["n_measured"], "n_models": s["n_models"]},
        description="every zoo model could be rebuilt from its sidecar and measured on this dataset",
    )


def _skipped(context: AssetExecutionContext, store: ArtifactStore, table_path: str):
    def build(directory: UPath) -> tuple[str, dict]:
        write_json(directory / TRANSFER_TABLE_FILE, {})
        return hashlib.sha256(b"skipped").hexdigest(), {"measured": False, "table": table_path}

    result = materialize_asset(context, store, config={"skipped": True}, inputs={}, build=build)
    reason = f"not measured: the performance table {table_path} is used (set mode='always' to measure anyway)"
    yield result.output({"measured": False, "reason": reason})
    yield AssetCheckResult(check_name="every_model_measured", passed=True, description=reason)
