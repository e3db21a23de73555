"""Asset ``ranking_transformer``: the product's learned ranker, trained on train datasets, judged on held-out ones.

The asset keeps the seed's name; what it trains is ``config.training`` (default
:func:`ml_core.ranking.product_ranker`: a learned linear weighting of the baselines' scores, chosen
on the leave-family-out validation folds; the attention rankers over dataset and model tokens are
``training.model.architecture`` ``cross_attention`` or ``encoder_decoder``). Its metadata names it.
"""

import hashlib
import math
import tempfile
from pathlib import Path

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, MetadataValue, asset
from upath import UPath

from assets.shared.artifacts import (
    Artifact,
    LoadedArtifacts,
    all_partitions,
    content_hashes,
    embedding_tokens,
    materialize_asset,
    png_markdown,
    source_descriptors,
)
from assets.shared.configs import RANKER_TRAINING_EXCLUDED, dagster_config, nested
from assets.shared.loaders import RANKER_EVALUATION_FILE, copy_training_outputs
from ml_core.artifacts import stable_json, write_json
from ml_core.ranking import RankerFitConfig, evaluate_rankers, fit_ranker, ranking_corpus
from ml_core.trainer import state_dict_bytes
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.dataset_catalog import DatasetCatalog

CODE_VERSION = "5"  # 2: cross-attention with baseline features; 3: + source similarity, linear default; 4: one config;
# 5: + the weight-neighbours feature (model tokens in the reference)
# the token widths come from the data, the device from the compute resource, the seeds from ``seed``
RankerAssetConfig = dagster_config(
    RankerFitConfig(), "RankerAssetConfig",
    exclude=nested("training", RANKER_TRAINING_EXCLUDED),
)


def describe_ranker(config: RankerFitConfig) -> str:
    """One line naming the ranker a config trains (for the metadata)."""
    model, training = config.training.model, config.training
    inputs = "the baselines' scores" + (" and the tokens" if model.architecture != "linear" else "")
    return f"{model.architecture} ranker over {inputs}, {training.loss} loss, token mode {training.token_mode}"


def evaluation_markdown(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return "no labelled dataset to evaluate"
    cols = ["dataset", "split", "method", "weighted_tau_truth", "weighted_tau_scipy", "top1_regret", "top3_recall"]
    return frame[[c for c in cols if c in frame]].round(3).to_markdown(index=False)


@asset(
    code_version=CODE_VERSION,
    group_name="ranking",
    kinds={"pytorch", "safetensors"},
    ins={
        "model_embeddings": all_partitions(),
        "model_source_tokens": all_partitions(),
        "dataset_tokens": all_partitions(),
    },
    check_specs=[AssetCheckSpec("validation_metric_finite", asset="ranking_transformer")],
    description="The product's ranker (default: a learned weighting of the prior, nearest-dataset and source "
    "similarity, pairwise loss; set training.model.architecture for the attention rankers), trained on train "
    "datasets; val for early stopping; test held out.",
)
def ranking_transformer(
    context: AssetExecutionContext,
    config: RankerAssetConfig,
    store: ArtifactStore,
    catalog: DatasetCatalog,
    compute: ComputeDevice,
    model_embeddings: dict[str, Artifact],
    model_source_tokens: dict[str, Artifact],
    dataset_tokens: dict[str, Artifact],
    ground_truth_ranks: Artifact,
):
    fit = config.to_ml()
    inputs = content_hashes(model_embeddings, "model") | content_hashes(model_source_tokens, "source")
    inputs |= content_hashes(dataset_tokens, "dataset") | {"ground_truth_ranks": ground_truth_ranks.content_hash}
    families = {e.key: e.family for e in catalog.entries()}

    def build(directory: UPath) -> tuple[str, dict]:
        models = sorted(model_embeddings)
        corpus = ranking_corpus(
            ground_truth_ranks.load(),
            embedding_tokens(model_embeddings),
            LoadedArtifacts(dataset_tokens),
            model_sources=source_descriptors(model_source_tokens, models) if model_source_tokens else None,
        )
        with tempfile.TemporaryDirectory() as local:
            artifact, history, corpus = fit_ranker(corpus, families, fit, Path(local), compute.torch_device())
            artifact.model.cpu()
            artifact.save(directory)
            files = copy_training_outputs(Path(local), directory)
        evaluation = evaluate_rankers(corpus, artifact)
        write_json(directory / RANKER_EVALUATION_FILE, evaluation)
        digest = hashlib.sha256(state_dict_bytes(artifact.model))
        if artifact.reference is not None:  # its features (model tokens included) are part of every score
            digest.update(stable_json(artifact.reference.to_dict()).encode())
        return digest.hexdigest(), {
            "splits": corpus.splits,
            "n_models": len(corpus.model_names),
            "n_labelled_datasets": len(corpus.dataset_names),
            "epochs_run": len(history.epochs),
            "best_epoch": history.best_epoch,
            "summary": evaluation["summary"],
            "per_dataset": evaluation["per_dataset"],
            "files": files,
        }

    result = materialize_asset(
        context, store, config={**config.model_dump(), "families": families}, inputs=inputs, build=build
    )
    s = result.summary
    metadata = {
        "ranker": describe_ranker(fit),
        "n_models": s["n_models"],
        "n_labelled_datasets": s["n_labelled_datasets"],
        "splits": MetadataValue.json(s["splits"]),
        "epochs_run": s["epochs_run"],
        "evaluation": MetadataValue.md(evaluation_markdown(s["per_dataset"])),
    }
    for split, methods in s["summary"].items():
        for method, figures in methods.items():
            for figure in ("weighted_tau_truth", "top1_regret"):
                value = figures.get(f"{figure}_mean")
                if value is not None and not math.isnan(value):  # regret: a fraction, shown in accuracy points
                    if figure == "top1_regret":
                        metadata[f"{split}_{method}_top1_regret_points"] = round(100.0 * float(value), 2)
                    else:
                        metadata[f"{split}_{method}_{figure}"] = round(float(value), 3)
    if "loss_curves.png" in s["files"]:
        metadata["loss_plot"] = png_markdown(result.ref.directory(store) / "loss_curves.png", "ranker loss")
    yield result.output(metadata)
    held_out = s["summary"].get("val") or s["summary"].get("test") or s["summary"].get("train") or {}
    value = held_out.get("ranker", {}).get("weighted_tau_truth_mean", float("nan"))
    yield AssetCheckResult(
        check_name="validation_metric_finite",
        passed=value is not None and not math.isnan(value),
        metadata={"held_out_weighted_tau_truth": round(float(value), 3) if value is not None else float("nan")},
        description="the ranker produced a finite weighted tau on its held-out datasets",
    )
