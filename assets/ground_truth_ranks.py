"""Asset ``ground_truth_ranks``: the performance table as per-dataset ranks and scores (parquet).

The table is the user's (the ``performance_table`` resource's path) when one is configured, else
the one ``transfer_performance`` measured. Measured columns flagged DEGENERATE (all models at
chance, saturated, or tied within test noise) are left out of the ground truth and listed, so
they are used neither to train nor to judge the ranker.
"""

import hashlib

import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    MetadataValue,
    Output,
    asset,
)
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached
from assets.transfer_performance import load_transfer_summary, load_transfer_table
from ml_core.performance_table import PerformanceTable, PerformanceTableError
from ml_core.ranks import keyed_ground_truth
from ml_core.storage import sha256_file, write_json
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from resources.performance_table import PerformanceTableResource

CODE_VERSION = "2"
RANKS_FILE = "ground_truth_ranks.parquet"
MEASURED_TABLE_FILE = "measured_performance.json"


def measured_table(
    refs: dict[str, ArtifactRef], store: ArtifactStore
) -> tuple[PerformanceTable, dict[str, str], dict[str, list[dict]]]:
    """The measured table over the non-degenerate columns, the degenerate ones (name -> reason),
    and the full measured JSON (degenerate columns included)."""
    records: dict[str, list[dict]] = {}
    degenerate: dict[str, str] = {}
    for key in sorted(refs):
        summary = load_transfer_summary(refs[key], store)
        if not summary.get("measured"):
            continue
        for dataset, rows in load_transfer_table(refs[key], store).items():
            records[dataset] = rows
            if summary["spread"]["degenerate"]:
                degenerate[dataset] = summary["spread"]["reason"]
    rows = [
        {"dataset": d, "model": r["model_name"], "accuracy": r["accuracy"], "model_type": r.get("model_type"),
         "trained_on_dataset": r.get("trained_on_dataset")}
        for d, rs in records.items() if d not in degenerate for r in rs
    ]
    if not rows:
        raise PerformanceTableError(
            "no performance table is configured and transfer_performance has no informative measured dataset "
            f"({len(records)} measured, {len(degenerate)} degenerate): materialize transfer_performance for the "
            "dataset partitions, or set MODELREC_PERFORMANCE_TABLE"
        )
    return PerformanceTable.from_frame(pd.DataFrame(rows), source="transfer_performance"), degenerate, records


@asset(
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="ground_truth",
    kinds={"pandas", "parquet"},
    ins={
        "transfer_performance": AssetIn(partition_mapping=AllPartitionMapping(), metadata={"all_partitions": True}),
    },
    check_specs=[AssetCheckSpec("every_table_name_known", asset="ground_truth_ranks")],
    description="Per-dataset ranks (0 = best) and scores (z-scored accuracy) of the zoo's models, from the "
    "user's performance table or, without one, the measured transfer_performance (degenerate datasets left out).",
)
def ground_truth_ranks(
    context: AssetExecutionContext,
    store: ArtifactStore,
    performance_table: PerformanceTableResource,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
    transfer_performance: dict[str, ArtifactRef],
):
    model_keys = {e.name: e.key for e in zoo.entries()}
    dataset_keys = {e.name: e.key for e in catalog.entries()}
    user_table = bool(performance_table.path)
    if user_table:
        table_input = {"table": sha256_file(performance_table.path)}
    else:
        table_input = {f"transfer:{k}": r.content_hash for k, r in sorted(transfer_performance.items())}

    def build(directory: UPath) -> tuple[str, dict]:
        degenerate: dict[str, str] = {}
        if user_table:
            table = performance_table.load()
        else:
            table, degenerate, measured = measured_table(transfer_performance, store)
            write_json(directory / MEASURED_TABLE_FILE, measured)
        truth = keyed_ground_truth(table, model_keys, dataset_keys)
        with (directory / RANKS_FILE).open("wb") as handle:
            truth.frame.to_parquet(handle, index=False)
        content = hashlib.sha256(pd.util.hash_pandas_object(truth.frame, index=False).values.tobytes()).hexdigest()
        names = truth.names
        return content, {
            "source": "user table" if user_table else "measured (transfer_performance)",
            "n_rows": len(truth.frame),
            "n_datasets": int(truth.frame["dataset_key"].nunique()),
            "n_models": int(truth.frame["model_key"].nunique()),
            "unknown_models": list(names.unknown_models),
            "missing_models": list(names.missing_models),
            "unknown_datasets": list(names.unknown_datasets),
            "missing_datasets": [d for d in names.missing_datasets if d not in degenerate],
            "degenerate_datasets": degenerate,
            "excluded_datasets": list(truth.excluded_datasets),
            "table_report": table.report.to_dict(),
        }

    result = materialize_cached(
        store,
        asset="ground_truth_ranks",
        partition=None,
        code_version=CODE_VERSION,
        config={},
        inputs={
            **table_input,
            "models": hashlib.sha256(repr(sorted(model_keys.items())).encode()).hexdigest(),
            "datasets": hashlib.sha256(repr(sorted(dataset_keys.items())).encode()).hexdigest(),
        },
        build=build,
        log=context.log,
    )
    s = result.summary
    frame = load_ranks(result.ref, store)
    best = frame[frame["rank"] == 0].groupby("dataset")["model"].apply(", ".join)
    degenerate = s.get("degenerate_datasets", {})
    yield Output(
        result.ref,
        data_version=result.data_version,
        metadata={
            **result.base_metadata(),
            "table_source": s.get("source", "user table"),
            "n_rows": s["n_rows"],
            "n_datasets": s["n_datasets"],
            "n_models": s["n_models"],
            "n_distinct_best_models": int(best.nunique()),
            "unknown_models": ", ".join(s["unknown_models"]) or "none",
            "models_without_results": ", ".join(s["missing_models"]) or "none",
            "unknown_datasets": ", ".join(s["unknown_datasets"]) or "none",
            "datasets_without_results": ", ".join(s["missing_datasets"]) or "none",
            "degenerate_datasets": MetadataValue.md(
                "\n".join(f"- {d}: {why}" for d, why in degenerate.items()) or "none"
            ),
            "best_model_per_dataset": MetadataValue.md(best.to_frame("best model").to_markdown()),
            "excluded_datasets": ", ".join(s.get("excluded_datasets", [])) or "none",
            "table_normalisations": MetadataValue.md(
                "\n".join(f"- {note}" for note in s.get("table_report", {}).get("notes", [])) or "none"
            ),
        },
    )
    yield AssetCheckResult(
        check_name="every_table_name_known",
        passed=not s["unknown_models"] and not s["unknown_datasets"],
        metadata={"unknown_models": len(s["unknown_models"]), "unknown_datasets": len(s["unknown_datasets"])},
        description="every model and dataset named in the table exists in the zoo / catalog",
    )


def load_ranks(ref: ArtifactRef, store: ArtifactStore) -> pd.DataFrame:
    with (ref.directory(store) / RANKS_FILE).open("rb") as handle:
        return pd.read_parquet(handle)


def load_ground_truth_summary(ref: ArtifactRef, store: ArtifactStore) -> dict:
    """The summary kept in the artifact's manifest (``degenerate_datasets``, ``source``, ...)."""
    manifest = store.lookup(ref.asset, ref.partition, ref.cache_key) or {}
    return manifest.get("summary", {})
