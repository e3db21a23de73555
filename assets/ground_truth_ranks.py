"""Asset ``ground_truth_ranks``: the performance table as per-dataset ranks and scores (parquet)."""

import hashlib

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, MetadataValue, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached
from ml_core.ranks import keyed_ground_truth
from ml_core.storage import sha256_file
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from resources.performance_table import PerformanceTableResource

CODE_VERSION = "1"
RANKS_FILE = "ground_truth_ranks.parquet"


@asset(
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="ground_truth",
    kinds={"pandas", "parquet"},
    check_specs=[AssetCheckSpec("every_table_name_known", asset="ground_truth_ranks")],
    description="Per-dataset ranks (0 = best) and scores (z-scored accuracy) of the zoo's models.",
)
def ground_truth_ranks(
    context: AssetExecutionContext,
    store: ArtifactStore,
    performance_table: PerformanceTableResource,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
):
    model_keys = {e.name: e.key for e in zoo.entries()}
    dataset_keys = {e.name: e.key for e in catalog.entries()}

    def build(directory: UPath) -> tuple[str, dict]:
        table = performance_table.load()
        truth = keyed_ground_truth(table, model_keys, dataset_keys)
        with (directory / RANKS_FILE).open("wb") as handle:
            truth.frame.to_parquet(handle, index=False)
        content = hashlib.sha256(pd.util.hash_pandas_object(truth.frame, index=False).values.tobytes()).hexdigest()
        names = truth.names
        return content, {
            "n_rows": len(truth.frame),
            "n_datasets": int(truth.frame["dataset_key"].nunique()),
            "n_models": int(truth.frame["model_key"].nunique()),
            "unknown_models": list(names.unknown_models),
            "missing_models": list(names.missing_models),
            "unknown_datasets": list(names.unknown_datasets),
            "missing_datasets": list(names.missing_datasets),
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
            "table": sha256_file(performance_table.path),
            "models": hashlib.sha256(repr(sorted(model_keys.items())).encode()).hexdigest(),
            "datasets": hashlib.sha256(repr(sorted(dataset_keys.items())).encode()).hexdigest(),
        },
        build=build,
        log=context.log,
    )
    s = result.summary
    frame = load_ranks(result.ref, store)
    best = frame[frame["rank"] == 0].groupby("dataset")["model"].apply(", ".join)
    yield Output(
        result.ref,
        data_version=result.data_version,
        metadata={
            **result.base_metadata(),
            "n_rows": s["n_rows"],
            "n_datasets": s["n_datasets"],
            "n_models": s["n_models"],
            "unknown_models": ", ".join(s["unknown_models"]) or "none",
            "models_without_results": ", ".join(s["missing_models"]) or "none",
            "unknown_datasets": ", ".join(s["unknown_datasets"]) or "none",
            "datasets_without_results": ", ".join(s["missing_datasets"]) or "none",
            "best_model_per_dataset": MetadataValue.md(best.to_frame("best model").to_markdown()),
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
