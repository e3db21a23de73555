"""Asset ``ranking_transformer``: the learned ranker, trained on train datasets, judged on held-out ones."""

import hashlib
import math
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached, png_markdown
from assets.dataset_tokens import load_tokens
from assets.ground_truth_ranks import load_ranks
from assets.model_embeddings import load_embedding
from assets.model_source_tokens import load_source_descriptors
from assets.training_outputs import copy_training_outputs
from ml_core.autoencoder import state_dict_bytes
from ml_core.ranker_training import RankerArtifact, RankerTrainingConfig, evaluate_rankers, train_ranker
from ml_core.ranking_data import RankingCorpus
from ml_core.splits import assign_dataset_splits
from ml_core.storage import write_json
from ml_core.trainer import TrainerConfig
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.dataset_catalog import DatasetCatalog

CODE_VERSION = "3"  # 2: cross-attention ranker with baseline features; 3: + source similarity, linear default
EVALUATION_FILE = "evaluation.json"


class RankerAssetConfig(Config):
    """Defaults: ``linear``, a learned weighting of the baselines' scores (prior, nearest-dataset,
    source similarity), started at their plain sum, pairwise loss: among the two best variants
    of ranker_evaluation's leave-family-out validation folds on the demo world (README "Ranking
    quality"; on new models, which have no past results, validation prefers the seed transformer). Set
    ``architecture`` to ``cross_attention`` or ``encoder_decoder`` (and ``lr`` to about 1e-3) for
    the attention rankers over dataset and model tokens."""

    architecture: Literal["encoder_decoder", "cross_attention", "linear"] = "linear"
    baseline_features: bool = True
    residual_init: bool = True
    d_model: int = 64
    nhead: int = 4
    num_encoder_layers: int = 1
    num_decoder_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.1
    loss: Literal["listmle", "pairwise"] = "pairwise"
    temperature_start: float = 1.0
    temperature_end: float = 1.0
    token_mode: Literal["rows", "class_means"] = "class_means"
    max_rows: int = 8
    batch_size: int = 4
    model_dropout: float = 0.2
    epochs: int = 40
    lr: float = 0.05
    weight_decay: float = 1e-2
    early_stopping_patience: int = 10
    val_fraction: float = 0.25
    test_fraction: float = 0.25
    seed: int = 0

    def training_config(self, device: str) -> RankerTrainingConfig:
        fields = self.model_dump()
        trainer = TrainerConfig(
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            early_stopping_patience=self.early_stopping_patience,
            scheduler="none",
            seed=self.seed,
            device=device,
        )
        keep = {k: v for k, v in fields.items() if k in RankerTrainingConfig.__dataclass_fields__}
        return RankerTrainingConfig(**{**keep, "trainer": trainer})


def build_corpus(
    store: ArtifactStore,
    catalog: DatasetCatalog,
    embeddings: dict[str, ArtifactRef],
    tokens: dict[str, ArtifactRef],
    ranks: pd.DataFrame,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    sources: dict[str, ArtifactRef] | None = None,
) -> RankingCorpus:
    """Align models (with embeddings), labelled datasets (with tokens) and accuracies; split by family.
    ``sources`` (model_source_tokens refs) give each model's source-sample descriptor."""
    model_keys = sorted(embeddings)
    labelled = sorted(set(ranks["dataset_key"]) & set(tokens))
    if not labelled:
        raise ValueError("no dataset has both tokens and ground truth: nothing to train the ranker on")
    accuracy = (
        ranks.pivot(index="dataset_key", columns="model_key", values="accuracy")
        .reindex(index=labelled, columns=model_keys)
        .to_numpy(dtype=np.float64)
    )
    families = {e.key: e.family for e in catalog.entries()}
    splits = assign_dataset_splits(
        labelled, families=families, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    return RankingCorpus(
        model_names=model_keys,
        model_tokens=np.stack([load_embedding(embeddings[k], store).token for k in model_keys]),
        dataset_names=labelled,
        dataset_tokens={k: load_tokens(tokens[k], store) for k in labelled},
        accuracy=accuracy,
        splits=splits,
        model_sources=load_source_descriptors(sources, store, model_keys) if sources else None,
    )


def evaluation_markdown(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return "no labelled dataset to evaluate"
    cols = ["dataset", "split", "method", "weighted_tau_truth", "weighted_tau_scipy", "top1_regret", "top3_recall"]
    return frame[[c for c in cols if c in frame]].round(3).to_markdown(index=False)


@asset(
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="ranking",
    kinds={"pytorch", "safetensors"},
    ins={
        "model_embeddings": AssetIn(metadata={"all_partitions": True}),
        "model_source_tokens": AssetIn(metadata={"all_partitions": True}),
        "dataset_tokens": AssetIn(metadata={"all_partitions": True}),
    },
    check_specs=[AssetCheckSpec("validation_metric_finite", asset="ranking_transformer")],
    description="RankingCrossAttentionTransformer trained with ListMLE on train datasets; val for early stopping; test held out.",
)
def ranking_transformer(
    context: AssetExecutionContext,
    config: RankerAssetConfig,
    store: ArtifactStore,
    catalog: DatasetCatalog,
    compute: ComputeDevice,
    model_embeddings: dict[str, ArtifactRef],
    model_source_tokens: dict[str, ArtifactRef],
    dataset_tokens: dict[str, ArtifactRef],
    ground_truth_ranks: ArtifactRef,
):
    inputs = {f"model:{k}": r.content_hash for k, r in model_embeddings.items()}
    inputs |= {f"source:{k}": r.content_hash for k, r in model_source_tokens.items()}
    inputs |= {f"dataset:{k}": r.content_hash for k, r in dataset_tokens.items()}
    inputs["ground_truth_ranks"] = ground_truth_ranks.content_hash
    families = {e.key: e.family for e in catalog.entries()}

    def build(directory: UPath) -> tuple[str, dict]:
        corpus = build_corpus(
            store,
            catalog,
            model_embeddings,
            dataset_tokens,
            load_ranks(ground_truth_ranks, store),
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            seed=config.seed,
            sources=model_source_tokens,
        )
        with tempfile.TemporaryDirectory() as local:
            artifact, history = train_ranker(
                corpus, config.training_config(compute.torch_device()), Path(local), families=families
            )
            artifact.model.cpu()
            artifact.save(directory)
            files = copy_training_outputs(Path(local), directory)
        evaluation = evaluate_rankers(corpus, artifact)
        write_json(directory / EVALUATION_FILE, evaluation)
        content_hash = hashlib.sha256(state_dict_bytes(artifact.model)).hexdigest()
        return content_hash, {
            "splits": corpus.splits,
            "n_models": len(corpus.model_names),
            "n_labelled_datasets": len(corpus.dataset_names),
            "epochs_run": len(history.epochs),
            "best_epoch": history.best_epoch,
            "summary": evaluation["summary"],
            "per_dataset": evaluation["per_dataset"],
            "files": files,
        }

    result = materialize_cached(
        store,
        asset="ranking_transformer",
        partition=None,
        code_version=CODE_VERSION,
        config={**config.model_dump(), "families": families},
        inputs=inputs,
        build=build,
        log=context.log,
    )
    s = result.summary
    metadata = {
        **result.base_metadata(),
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
                if value is not None and not math.isnan(value):
                    metadata[f"{split}_{method}_{figure}"] = float(value)
    if "loss_curves.png" in s["files"]:
        metadata["loss_plot"] = png_markdown(result.ref.directory(store) / "loss_curves.png", "ranker loss")
    yield Output(result.ref, data_version=result.data_version, metadata=metadata)
    held_out = s["summary"].get("val") or s["summary"].get("test") or s["summary"].get("train") or {}
    value = held_out.get("ranker", {}).get("weighted_tau_truth_mean", float("nan"))
    yield AssetCheckResult(
        check_name="validation_metric_finite",
        passed=value is not None and not math.isnan(value),
        metadata={"held_out_weighted_tau_truth": float(value) if value is not None else float("nan")},
        description="the ranker produced a finite weighted tau on its held-out datasets",
    )


def load_ranker(ref: ArtifactRef, store: ArtifactStore) -> RankerArtifact:
    return RankerArtifact.load(ref.directory(store))
