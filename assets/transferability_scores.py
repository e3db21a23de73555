"""Asset ``transferability_scores``: LogME and H-score of every zoo model on one dataset.

These are the forward-pass baselines the learned ranker is compared with: each needs every
model run on the target's labelled training images. Partitioned by dataset; each (model,
dataset) cell is cached on its own (checkpoint sha256, sidecar card, dataset content), so a new
model costs its own cells only. The time of each forward pass is recorded: it is the cost a
user would pay to rank the zoo this way.
"""

import hashlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from dagster import AssetExecutionContext, BackfillPolicy, Config, MetadataValue, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached
from assets.partitions import datasets_partitions
from assets.transfer_performance import ZooCell, cell_inputs, zoo_cells
from ml_core.storage import read_json, stable_json, write_json
from ml_core.transfer import (
    LabelledImages,
    TransferError,
    dataset_content_fingerprint,
    load_split,
    load_zoo_model,
    to_model_input,
    torch_threads,
)
from ml_core.transferability import model_features, transferability_report
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo

CODE_VERSION = "2"  # 2: Ledoit-Wolf shrunk H-score
SCORES_FILE = "transferability_scores.json"
CELL_ASSET = "transferability_cell"


class TransferabilityConfig(Config):
    split: str = "train"
    max_images: int = 1000


def _cell_scores(
    store: ArtifactStore,
    dataset_key: str,
    cell: ZooCell,
    dataset_fp: str,
    images: Callable[[], LabelledImages],
    config_dump: dict,
) -> tuple[dict[str, Any], bool]:
    def build(directory: UPath) -> tuple[str, dict]:
        try:
            data: LabelledImages = images()
            model = load_zoo_model(cell.entry.path, cell.card, architecture=cell.entry.architecture)
            start = time.perf_counter()
            with torch_threads(1):
                features = model_features(model, to_model_input(data.images, cell.card))
            forward_seconds = time.perf_counter() - start
            outcome = {
                **transferability_report(features, data.labels),
                "n_images": len(data),
                "forward_seconds": forward_seconds,
            }
        except (TransferError, ValueError) as err:  # a model that cannot run: recorded, not fatal
            outcome = {"error": str(err)}
        write_json(directory / "cell.json", outcome)
        return hashlib.sha256(stable_json(outcome).encode()).hexdigest(), outcome

    card_fp = cell.card.fingerprint() if cell.card else cell.problem
    result = materialize_cached(
        store,
        asset=CELL_ASSET,
        partition=dataset_key,
        code_version=CODE_VERSION,
        config=config_dump,
        inputs={"dataset": dataset_fp, "checkpoint": cell.checkpoint_sha256, "card": str(card_fp)},
        build=build,
        log=None,  # one cell per model: no per-cell cache messages
    )
    return result.summary, result.cache_hit


@asset(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="evaluation",
    kinds={"pytorch", "json"},
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
    description="LogME and H-score of every zoo model on this dataset's training images (forward-pass baselines).",
)
def transferability_scores(
    context: AssetExecutionContext,
    config: TransferabilityConfig,
    store: ArtifactStore,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
):
    entry = catalog.entry(context.partition_key)
    dataset_fp = dataset_content_fingerprint(entry.path, [config.split])
    cells = zoo_cells(zoo)
    inputs = {"dataset": dataset_fp} | cell_inputs(cells)
    loaded: dict[str, LabelledImages] = {}

    def images() -> LabelledImages:  # decoded once per dataset, only on a cell miss
        if "data" not in loaded:
            data = load_split(entry.path, config.split)
            keep = np.random.default_rng(0).permutation(len(data))[: config.max_images]
            keep.sort()
            loaded["data"] = LabelledImages([data.images[i] for i in keep], data.labels[keep], data.classes)
        return loaded["data"]

    def build(directory: UPath) -> tuple[str, dict]:
        scores, problems, hits = {}, {}, 0
        for cell in cells:
            if cell.card is None:
                problems[cell.entry.key] = cell.problem
                continue
            outcome, hit = _cell_scores(store, entry.key, cell, dataset_fp, images, config.model_dump())
            hits += hit
            if "error" in outcome:
                problems[cell.entry.key] = outcome["error"]
            else:
                scores[cell.entry.key] = outcome
        write_json(directory / SCORES_FILE, {"scores": scores, "problems": problems})
        content = hashlib.sha256(stable_json([scores, problems]).encode()).hexdigest()
        return content, {"n_scored": len(scores), "n_cells_cached": hits, "problems": problems,
                         "forward_seconds": sum(s["forward_seconds"] for s in scores.values())}

    result = materialize_cached(
        store,
        asset="transferability_scores",
        partition=entry.key,
        code_version=CODE_VERSION,
        config=config.model_dump(),
        inputs=inputs,
        build=build,
        log=context.log,
    )
    s = result.summary
    scores = load_transferability(result.ref, store)["scores"]
    ranked = sorted(scores.items(), key=lambda kv: -kv[1]["logme"])
    table = "| model | LogME | H-score | forward s |\n| --- | --- | --- | --- |\n" + "\n".join(
        f"| {m} | {v['logme']:.4f} | {v['h_score']:.3f} | {v['forward_seconds']:.2f} |" for m, v in ranked
    )
    yield Output(
        result.ref,
        data_version=result.data_version,
        metadata={
            **result.base_metadata(),
            "n_scored": s["n_scored"],
            "n_cells_reused": s["n_cells_cached"],
            "forward_seconds_all_models": float(s["forward_seconds"]),
            "scores": MetadataValue.md(table),
            "unscored_models": MetadataValue.json(s["problems"]),
        },
    )


def load_transferability(ref: ArtifactRef, store: ArtifactStore) -> dict[str, Any]:
    return read_json(ref.directory(store) / SCORES_FILE)
