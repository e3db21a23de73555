"""Asset ``transferability_scores``: LogME, H-score and a linear probe of every zoo model on one dataset.

These are the forward-pass baselines the learned ranker is compared with: each needs every
model run on the target's labelled training images. Partitioned by dataset; each (model,
dataset) cell is cached on its own (checkpoint content, model card, dataset content), so a new
model costs its own cells only. The time of each forward pass is recorded: it is the cost a
user would pay to rank the zoo this way.
"""

from dagster import AllPartitionMapping, AssetDep, AssetExecutionContext, MetadataValue
from upath import UPath

from assets.shared.artifacts import materialize_asset
from assets.shared.configs import dagster_config
from assets.shared.loaders import SCORES_FILE
from assets.shared.partitions import asset_one_partition_per_run, datasets_partitions
from assets.shared.transferability_cells import cached_cell, dataset_images
from ml_core.artifacts import write_json
from ml_core.ground_truth import (
    TransferabilityConfig,
    ZooCell,
    column_inputs,
    transferability_column,
    transferability_content,
    zoo_cells,
)
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo

# 2: Ledoit-Wolf shrunk H-score; 3: one content fingerprint per dataset and per checkpoint; 4: a 4-fold
# linear probe's accuracy beside LogME and H-score; 5: the data version leaves out the forward passes'
# seconds and the scores are computed on one BLAS thread, so that every run gives the same data version
CODE_VERSION = "5"
TransferabilityAssetConfig = dagster_config(TransferabilityConfig(), "TransferabilityAssetConfig")


@asset_one_partition_per_run(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    group_name="evaluation",
    kinds={"pytorch", "json"},
    # the user's files it reads: this dataset's images and every model's checkpoint (the source assets)
    deps=[AssetDep("image_folders"), AssetDep("model_checkpoints", partition_mapping=AllPartitionMapping())],
    description="LogME, H-score and a 4-fold linear probe of every zoo model on this dataset's training images "
    "(forward-pass baselines; the probe is the budgeted mode's measurement).",
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
    images = dataset_images(entry.path, scoring)  # decoded once per dataset, only on a cell miss

    def score(cell: ZooCell) -> tuple[dict, bool]:
        return cached_cell(store, cell, entry.key, dataset_fp, images, scoring)

    def build(directory: UPath) -> tuple[str, dict]:
        scores, problems, hits = transferability_column(cells, score)
        write_json(directory / SCORES_FILE, {"scores": scores, "problems": problems})
        return transferability_content(scores, problems), {
            "n_scored": len(scores), "n_cells_cached": hits, "problems": problems,
            "forward_seconds": sum(s["forward_seconds"] for s in scores.values()),
        }

    result = materialize_asset(
        context, store, config=config.model_dump(), inputs={"dataset": dataset_fp} | column_inputs(cells),
        build=build, partition=entry.key,
    )
    s = result.summary
    scores = result.artifact(store).load()["scores"]
    ranked = sorted(scores.items(), key=lambda kv: -kv[1]["logme"])
    table = "| model | LogME | H-score | linear probe | forward s |\n| --- | --- | --- | --- | --- |\n" + "\n".join(
        f"| {m} | {v['logme']:.4f} | {v['h_score']:.3f} | {v['probe']:.3f} | {v['forward_seconds']:.2f} |"
        for m, v in ranked
    )
    yield result.output({
        "n_scored": s["n_scored"],
        "n_cells_reused": s["n_cells_cached"],
        "forward_seconds_all_models": round(float(s["forward_seconds"]), 2),
        "scores": MetadataValue.md(table),
        "unscored_models": MetadataValue.json(s["problems"]),
    })
