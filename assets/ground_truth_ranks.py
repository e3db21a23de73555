"""Asset ``ground_truth_ranks``: the performance table as per-dataset ranks and scores (parquet).

The table is the user's (the ``performance_table`` resource's path) when one is configured, else
the one ``transfer_performance`` measured. Measured columns flagged DEGENERATE (all models at
chance, saturated, or tied within test noise) are left out of the ground truth and listed, so
they are used neither to train nor to judge the ranker.

The ``result_history`` (results reported later, :mod:`assets.result_history`) is averaged in: every
(dataset, model) pair's accuracy is the mean of the table's value and each reported one, and the pairs
whose values differ are listed with every value (metadata ``result_conflicts``). A new result therefore
gives the ground truth a new data version; the ranker learns it when ``ranking_transformer`` is
materialized again (never automatically).
"""

import hashlib

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
    asset,
)
from upath import UPath

from assets.shared.artifacts import Artifact, all_partitions, content_hashes, materialize_asset, optional_input
from assets.shared.loaders import MEASURED_TABLE_FILE, RANKS_FILE, write_parquet
from ml_core.artifacts import write_json
from ml_core.ground_truth import keyed_ground_truth, measured_table, merge_history
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from resources.performance_table import PerformanceTableResource

CODE_VERSION = "3"  # 3: the result history averaged in


@asset(
    code_version=CODE_VERSION,
    group_name="ground_truth",
    kinds={"pandas", "parquet"},
    ins={
        "transfer_performance": all_partitions(all_upstream=True),
        "result_history": optional_input(),
    },
    check_specs=[AssetCheckSpec("every_table_name_known", asset="ground_truth_ranks")],
    description="Per-dataset ranks (0 = best) and scores (z-scored accuracy) of the zoo's models, from the "
    "user's performance table or, without one, the measured transfer_performance (degenerate datasets left out), "
    "with the results reported later (result_history) averaged in.",
)
def ground_truth_ranks(
    context: AssetExecutionContext,
    store: ArtifactStore,
    performance_table: PerformanceTableResource,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
    transfer_performance: dict[str, Artifact],
    result_history: Artifact | None,
):
    model_keys = {e.name: e.key for e in zoo.entries()}
    dataset_keys = {e.name: e.key for e in catalog.entries()}
    user_table = bool(performance_table.path)
    if user_table:
        table_input = {"table": store.fingerprints.file_sha256(performance_table.path)}
    else:
        table_input = content_hashes(dict(sorted(transfer_performance.items())), "transfer")
    if result_history is not None:
        table_input["result_history"] = result_history.content_hash

    def build(directory: UPath) -> tuple[str, dict]:
        degenerate: dict[str, str] = {}
        if user_table:
            table = performance_table.load()
        else:
            columns = ((transfer_performance[k].summary(), transfer_performance[k].load())
                       for k in sorted(transfer_performance))
            table, degenerate, measured = measured_table(columns)
            write_json(directory / MEASURED_TABLE_FILE, measured)
        history = result_history.load() if result_history is not None else None
        table, conflicts = merge_history(table, history)
        truth = keyed_ground_truth(table, model_keys, dataset_keys)
        write_parquet(truth.frame, directory / RANKS_FILE)
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
            "n_reported_results": 0 if history is None else len(history),
            "result_conflicts": conflicts,
        }

    result = materialize_asset(
        context, store, config={},
        inputs={
            **table_input,
            "models": hashlib.sha256(repr(sorted(model_keys.items())).encode()).hexdigest(),
            "datasets": hashlib.sha256(repr(sorted(dataset_keys.items())).encode()).hexdigest(),
        },
        build=build,
    )
    s = result.summary
    frame = result.artifact(store).load()
    best = frame[frame["rank"] == 0].groupby("dataset")["model"].apply(", ".join)
    degenerate = s.get("degenerate_datasets", {})
    yield result.output({
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
        "n_reported_results": s.get("n_reported_results", 0),
        "result_conflicts": MetadataValue.md(
            "\n".join(f"- {c['dataset']} / {c['model']}: "
                      + ", ".join(f"{v:.4f} ({source})" for source, v in c["values"]) + f" -> mean {c['mean']:.4f}"
                      for c in s.get("result_conflicts", [])) or "none"
        ),
        "table_normalisations": MetadataValue.md(
            "\n".join(f"- {note}" for note in s.get("table_report", {}).get("notes", [])) or "none"
        ),
    })
    yield AssetCheckResult(
        check_name="every_table_name_known",
        passed=not s["unknown_models"] and not s["unknown_datasets"],
        metadata={"unknown_models": len(s["unknown_models"]), "unknown_datasets": len(s["unknown_datasets"])},
        description="every model and dataset named in the table exists in the zoo / catalog",
    )
