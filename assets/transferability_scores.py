"""Asset ``transferability_scores``: LogME and H-score of every zoo model on one dataset.

These are the forward-pass baselines the learned ranker is compared with: each needs every
model run on the target's labelled training images. Partitioned by dataset; each (model,
dataset) cell is cached on its own (checkpoint content, model card, dataset content), so a new
model costs its own cells only. The time of each forward pass is recorded: it is the cost a
user would pay to rank the zoo this way.
"""

import hashlib

from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue, asset
from upath import UPath

from assets.artifacts import materialize_asset, materialize_cached
from assets.configs import dagster_config
from assets.loaders import CELL_FILE, SCORES_FILE
from assets.partitions import datasets_partitions
from ml_core.artifacts import stable_json, write_json
from ml_core.ground_truth import (
    LabelledImages,
    TransferabilityConfig,
    ZooCell,
    column_inputs,
    load_split,
    scoring_images,
    transferability_column,
    transferability_outcome,
    zoo_cells,
)
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo

CODE_VERSION = "3"  # 2: Ledoit-Wolf shrunk H-score; 3: one content fingerprint per dataset and per checkpoint
CELL_ASSET = "transferability_cell"
TransferabilityAssetConfig = dagster_config(TransferabilityConfig(), "TransferabilityAssetConfig")


@asset(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    group_name="evaluation",
    kinds={"pytorch", "json"},
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
    description="LogME and H-score of every zoo model on this dataset's training images (forward-pass baselines).",
)
def transferability_scores(
    context: AssetExecutionContext,
    config: TransferabilityAssetConfig,
    store: ArtifactStore,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
):
    entry = catalog.entry(context.partition_key)
    scoring = config.to_ml()
    dataset_fp = store.fingerprints.folder(entry.path)
    cells = zoo_cells(zoo.entries(), store.fingerprints.file_sha256)
    loaded: dict[str, LabelledImages] = {}

    def images() -> LabelledImages:  # decoded once per dataset, only on a cell miss
        if "data" not in loaded:
            loaded["data"] = scoring_images(load_split(entry.path, scoring.split), scoring.max_images)
        return loaded["data"]

    def score(cell: ZooCell) -> tuple[dict, bool]:
        def build(directory: UPath) -> tuple[str, dict]:
            outcome = transferability_outcome(cell, images)
            write_json(directory / CELL_FILE, outcome)
            return hashlib.sha256(stable_json(outcome).encode()).hexdigest(), outcome

        result = materialize_cached(
            store, asset=CELL_ASSET, partition=entry.key, code_version=CODE_VERSION, config=config.model_dump(),
            inputs={"dataset": dataset_fp, "checkpoint": cell.checkpoint_sha256, "card": cell.input_hash()},
            build=build, log=None,  # one cell per model: no per-cell cache messages
        )
        return result.summary, result.cache_hit

    def build(directory: UPath) -> tuple[str, dict]:
        scores, problems, hits = transferability_column(cells, score)
        write_json(directory / SCORES_FILE, {"scores": scores, "problems": problems})
        content = hashlib.sha256(stable_json([scores, problems]).encode()).hexdigest()
        return content, {"n_scored": len(scores), "n_cells_cached": hits, "problems": problems,
                         "forward_seconds": sum(s["forward_seconds"] for s in scores.values())}

    result = materialize_asset(
        context, store, config=config.model_dump(), inputs={"dataset": dataset_fp} | column_inputs(cells),
        build=build, partition=entry.key,
    )
    s = result.summary
    scores = result.artifact(store).load()["scores"]
    ranked = sorted(scores.items(), key=lambda kv: -kv[1]["logme"])
    table = "| model | LogME | H-score | forward s |\n| --- | --- | --- | --- |\n" + "\n".join(
        f"| {m} | {v['logme']:.4f} | {v['h_score']:.3f} | {v['forward_seconds']:.2f} |" for m, v in ranked
    )
    yield result.output({
        "n_scored": s["n_scored"],
        "n_cells_reused": s["n_cells_cached"],
        "forward_seconds_all_models": float(s["forward_seconds"]),
        "scores": MetadataValue.md(table),
        "unscored_models": MetadataValue.json(s["problems"]),
    })
