"""Asset ``transfer_performance``: every zoo model's measured transfer accuracy on one dataset.

Partitioned by dataset. Each (model, dataset) CELL is cached on its own under a key of the
checkpoint's sha256, the sidecar card, the dataset's content and the protocol: a new model
measures only its own cells, a new dataset only its column, a rerun nothing. The artifact is
JSON in the performance-table format ``{dataset: [{model_name, model_type, accuracy,
trained_on_dataset}]}`` plus the column's spread report (degenerate or not).

``mode="auto"`` (default) measures only when no performance table is configured (the
``performance_table`` resource's path is empty): a user who brings a table pays nothing here.
"""

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MetadataValue,
    Output,
    asset,
)
from upath import UPath

from assets.artifacts import ArtifactRef, CachedResult, materialize_cached
from assets.partitions import datasets_partitions
from ml_core.storage import read_json, stable_json, write_json
from ml_core.transfer import (
    TRANSFER_CODE_VERSION,
    LabelledImages,
    TransferError,
    TransferModelCard,
    TransferProtocol,
    assess_spread,
    cell_key,
    checkpoint_fingerprint,
    dataset_content_fingerprint,
    load_split,
    load_zoo_model,
    measure_transfer,
    torch_threads,
)
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo, ZooEntry
from resources.performance_table import PerformanceTableResource

CODE_VERSION = "1"
TABLE_FILE = "transfer_performance.json"
CELL_ASSET = "transfer_cell"
CELL_FILE = "cell.json"


class TransferConfig(Config):
    """The protocol (see :class:`ml_core.transfer.TransferProtocol`) and when to measure."""

    mode: Literal["auto", "always"] = "auto"
    protocol: Literal["finetune", "linear_probe"] = "finetune"
    epochs: int = 15
    min_steps: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    train_last_block: bool = True
    probe_c: float = 1.0
    seed: int = 0
    train_split: str = "train"
    test_split: str = "test"
    # degenerate-target test (ml_core.transfer.assess_spread)
    noise_z: float = 2.5
    min_tolerance: float = 0.02
    saturation: float = 0.98

    def transfer_protocol(self) -> TransferProtocol:
        return TransferProtocol(
            kind=self.protocol, epochs=self.epochs, min_steps=self.min_steps, batch_size=self.batch_size,
            lr=self.lr, weight_decay=self.weight_decay, train_last_block=self.train_last_block,
            probe_c=self.probe_c, seed=self.seed, train_split=self.train_split, test_split=self.test_split,
        )


@dataclass(frozen=True)
class ZooCell:
    entry: ZooEntry
    card: TransferModelCard | None
    problem: str | None
    checkpoint_sha256: str

    def record(self, accuracy: float | None) -> dict[str, Any]:
        return {
            "model_name": self.entry.name,
            "model_type": self.card.architecture if self.card else self.entry.architecture,
            "accuracy": accuracy,
            "trained_on_dataset": self.entry.metadata.get("source_task"),
        }


def cell_inputs(cells: list[ZooCell]) -> dict[str, str]:
    """Cache-key inputs of a column: each model's checkpoint hash and card (or why it has none)."""
    return {
        f"model:{c.entry.key}": hashlib.sha256(
            stable_json([c.checkpoint_sha256, c.card.fingerprint() if c.card else c.problem]).encode()
        ).hexdigest()
        for c in cells
    }


def zoo_cells(zoo: ModelZoo) -> list[ZooCell]:
    cells = []
    for entry in zoo.entries():
        sha = checkpoint_fingerprint(entry.path)
        try:
            cells.append(ZooCell(entry, TransferModelCard.from_sidecar(entry.metadata, entry.path), None, sha))
        except TransferError as err:
            cells.append(ZooCell(entry, None, str(err), sha))
    return cells


@asset(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="ground_truth",
    kinds={"pytorch", "json"},
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
    check_specs=[AssetCheckSpec("every_model_measured", asset="transfer_performance")],
    description="Transfer accuracy of every zoo model on this dataset by a fixed fine-tuning protocol "
    "(cell-level cache); measured only when no performance table is configured.",
)
def transfer_performance(
    context: AssetExecutionContext,
    config: TransferConfig,
    store: ArtifactStore,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
    performance_table: PerformanceTableResource,
):
    entry = catalog.entry(context.partition_key)
    if config.mode == "auto" and performance_table.path:
        yield from _skipped(context, store, performance_table.path)
        return

    protocol = config.transfer_protocol()
    spread_config = {"noise_z": config.noise_z, "min_tolerance": config.min_tolerance, "saturation": config.saturation}
    dataset_fp = dataset_content_fingerprint(entry.path, [protocol.train_split, protocol.test_split])
    cells = zoo_cells(zoo)
    inputs = {"dataset": dataset_fp} | cell_inputs(cells)

    def build(directory: UPath) -> tuple[str, dict]:
        data: dict[str, LabelledImages] = {}

        def split(name: str) -> LabelledImages:  # decoded once per column, only on a cell miss
            if name not in data:
                classes = split(protocol.train_split).classes if name != protocol.train_split else None
                data[name] = load_split(entry.path, name, classes)
            return data[name]

        records, results, problems, hits = [], {}, {}, 0
        for cell in cells:
            if cell.card is None:
                problems[cell.entry.name] = cell.problem
                records.append(cell.record(None))
                continue
            with torch_threads(1):
                measured = _measure_cell(store, entry.key, cell, dataset_fp, protocol, split, context)
            hits += measured.cache_hit
            result = measured.summary
            if "error" in result:
                problems[cell.entry.name] = result["error"]
                records.append(cell.record(None))
            else:
                results[cell.entry.name] = result
                records.append(cell.record(result["accuracy"]))
        measured_accs = [r["accuracy"] for r in records if r["accuracy"] is not None]
        first = next(iter(results.values()), None)
        spread = assess_spread(
            measured_accs,
            chance=first["chance"] if first else 0.0,
            n_test=first["n_test"] if first else 0,
            z=config.noise_z,
            min_tolerance=config.min_tolerance,
            saturation=config.saturation,
        )
        table = {entry.name: records}
        write_json(directory / TABLE_FILE, table)
        content = hashlib.sha256(stable_json([table, spread.model_dump(mode="json")]).encode()).hexdigest()
        return content, {
            "dataset": entry.name,
            "measured": True,
            "protocol": protocol.model_dump(mode="json"),
            "n_models": len(cells),
            "n_measured": len(measured_accs),
            "n_cells_cached": hits,
            "problems": problems,
            "spread": spread.model_dump(mode="json"),
            "results": results,
            "best_model": max(results, key=lambda m: results[m]["accuracy"]) if results else None,
        }

    result = materialize_cached(
        store,
        asset="transfer_performance",
        partition=entry.key,
        code_version=CODE_VERSION,
        config={"protocol": protocol.model_dump(mode="json"), "spread": spread_config, "transfer_code": TRANSFER_CODE_VERSION},
        inputs=inputs,
        build=build,
        log=context.log,
    )
    s = result.summary
    spread = s["spread"]
    rows = sorted(s["results"].items(), key=lambda kv: -kv[1]["accuracy"])
    table_md = "| model | accuracy | train accuracy | seconds |\n| --- | --- | --- | --- |\n" + "\n".join(
        f"| {m} | {r['accuracy']:.3f} | {r['train_accuracy']:.3f} | {r['seconds']:.2f} |" for m, r in rows
    )
    yield Output(
        result.ref,
        data_version=result.data_version,
        metadata={
            **result.base_metadata(),
            "dataset": entry.name,
            "protocol": s["protocol"]["kind"],
            "n_models": s["n_models"],
            "n_measured": s["n_measured"],
            "n_cells_reused": s["n_cells_cached"],
            "best_model": s["best_model"] or "none",
            "best_accuracy": float(spread["best"]) if s["n_measured"] else float("nan"),
            "chance": float(spread["chance"]),
            "spread": float(spread["spread"]),
            "degenerate": bool(spread["degenerate"]),
            "degenerate_reason": spread["reason"] or "none",
            "accuracies": MetadataValue.md(table_md),
            "unmeasured_models": MetadataValue.json(s["problems"]),
        },
    )
    yield AssetCheckResult(
        check_name="every_model_measured",
        passed=not s["problems"],
        metadata={"n_measured": s["n_measured"], "n_models": s["n_models"]},
        description="every zoo model could be rebuilt from its sidecar and measured on this dataset",
    )


def _measure_cell(store, dataset_key, cell, dataset_fp, protocol, split, context) -> CachedResult:
    """One (model, dataset) accuracy, from its own cache entry or measured now."""

    def build(directory: UPath) -> tuple[str, dict]:
        try:
            model = load_zoo_model(cell.entry.path, cell.card, architecture=cell.entry.architecture)
            train, test = split(protocol.train_split), split(protocol.test_split)
            outcome = measure_transfer(model, cell.card, train, test, protocol).to_dict()
        except TransferError as err:  # a model that does not fit its card: recorded, not fatal
            outcome = {"error": str(err)}
        write_json(directory / CELL_FILE, outcome)
        context.log.debug(f"{cell.entry.name} on {dataset_key}: {outcome}")
        return hashlib.sha256(stable_json(outcome).encode()).hexdigest(), outcome

    return materialize_cached(
        store,
        asset=CELL_ASSET,
        partition=dataset_key,
        code_version=f"{CODE_VERSION}.{TRANSFER_CODE_VERSION}",
        config=protocol.model_dump(mode="json"),
        inputs={"cell": cell_key(cell.checkpoint_sha256, cell.card, dataset_fp, protocol)},
        build=build,
        log=None,  # hundreds of cells per run: no per-cell cache messages
    )


def _skipped(context: AssetExecutionContext, store: ArtifactStore, table_path: str):
    def build(directory: UPath) -> tuple[str, dict]:
        write_json(directory / TABLE_FILE, {})
        return hashlib.sha256(b"skipped").hexdigest(), {"measured": False, "table": table_path}

    result = materialize_cached(
        store, asset="transfer_performance", partition=context.partition_key, code_version=CODE_VERSION,
        config={"skipped": True}, inputs={}, build=build, log=context.log,
    )
    reason = f"not measured: the performance table {table_path} is used (set mode='always' to measure anyway)"
    yield Output(result.ref, data_version=result.data_version,
                 metadata={**result.base_metadata(), "measured": False, "reason": reason})
    yield AssetCheckResult(check_name="every_model_measured", passed=True, description=reason)


def load_transfer_table(ref: ArtifactRef, store: ArtifactStore) -> dict[str, list[dict[str, Any]]]:
    """The ``{dataset: [records]}`` JSON of one partition (empty when it was skipped)."""
    return read_json(ref.directory(store) / TABLE_FILE)


def load_transfer_summary(ref: ArtifactRef, store: ArtifactStore) -> dict[str, Any]:
    """The partition's summary: ``measured``, ``spread`` (degenerate, reason, ...), ``results``."""
    manifest = store.lookup(ref.asset, ref.partition, ref.cache_key) or {}  # read from disk: a fresh copy
    return manifest.get("summary", {})
