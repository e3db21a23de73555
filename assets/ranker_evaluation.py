"""Asset ``ranker_evaluation``: the learned ranker against the baselines on held-out data.

Leave-family-out folds (every dataset of a family held out together) and leave-models-out
folds (models never seen by the autoencoder or the ranker), with the data-free prior, the
nearest-dataset baseline, LogME and H-score beside the learned ranker and its two-stage mode.
The ranker variant reported is chosen on validation datasets only. See
:mod:`ml_core.ranker_evaluation`.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from dagster import AllPartitionMapping, AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached, png_markdown
from assets.dataset_tokens import load_tokens
from assets.ground_truth_ranks import load_ranks
from assets.model_embeddings import load_embedding
from assets.model_parameters import load_parameters
from assets.model_source_tokens import load_source_descriptors
from assets.transferability_scores import load_transferability
from ml_core.autoencoder import AutoEncoderConfig, AutoEncoderTrainingConfig, train_autoencoder
from ml_core.embeddings import embed_model
from ml_core.evaluation_folds import leave_family_out_folds, leave_models_out_folds
from ml_core.ranker_evaluation import (
    EvaluationConfig,
    EvaluationData,
    EvaluationResult,
    TokensWithout,
    evaluate,
    summary_markdown,
)
from ml_core.ranker_training import RankerTrainingConfig
from ml_core.storage import read_json, write_json
from ml_core.trainer import TrainerConfig
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog

# 2: two-stage rows with the prior's and nearest-dataset's shortlists; 3: variant ensemble; 4: source
# similarity (baseline and ranker input), coverage shortlists, the oracle-neighbour ceiling, a linear variant;
# 5: coverage ties broken by the first stage whatever the float rounding; 6: nearest-dataset by source
# profile (a baseline row)
CODE_VERSION = "6"
ROWS_FILE = "evaluation_rows.parquet"
SUMMARY_FILE = "evaluation_summary.json"
PLOT_FILE = "evaluation.png"

# The variants the asset tries by default; the one with the best validation weighted tau is
# reported as "ranker". `benchmarks/ranking_quality.py` sweeps more (SWEEP_VARIANTS). A variant's
# "trainer.<field>" keys set that field of its TrainerConfig (e.g. "trainer.lr").
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "seed_transformer": {"architecture": "encoder_decoder", "loss": "listmle"},
    "cross_attention+baselines": {"architecture": "cross_attention", "baseline_features": True, "loss": "pairwise"},
    "linear+baselines": {  # a learned weighting of the baselines' opinions: the floor for the networks
        "architecture": "linear", "baseline_features": True, "residual_init": True, "trainer.lr": 0.05,
    },
}
SWEEP_VARIANTS: dict[str, dict[str, Any]] = {
    **DEFAULT_VARIANTS,
    "seed_transformer+rows": {"architecture": "encoder_decoder", "loss": "listmle", "token_mode": "rows"},
    "cross_attention": {"architecture": "cross_attention", "loss": "listmle"},
    "cross_attention+baselines+listmle": {"architecture": "cross_attention", "baseline_features": True},
    "transformer+baselines": {"architecture": "encoder_decoder", "baseline_features": True},
    "cross_attention+baselines+no_dropout": {
        "architecture": "cross_attention", "baseline_features": True, "loss": "pairwise", "model_dropout": 0.0,
    },
    "cross_attention+baselines+residual": {  # starts as prior + nearest exactly; keeps that if val says so
        "architecture": "cross_attention", "baseline_features": True, "loss": "pairwise", "residual_init": True,
    },
}


class RankerEvaluationConfig(Config):
    epochs: int = 40
    lr: float = 1e-3
    early_stopping_patience: int = 10
    d_model: int = 64
    token_mode: Literal["rows", "class_means"] = "class_means"
    model_dropout: float = 0.2
    variants: str = json.dumps(DEFAULT_VARIANTS)  # JSON: {name: {field: value}}
    val_families: int = 2
    models_folds: int = 3
    two_stage_k: int = 0  # 0: a third of the evaluated models
    seed: int = 0

    def ranker_variants(self) -> dict[str, RankerTrainingConfig]:
        base = RankerTrainingConfig(
            d_model=self.d_model,
            dim_feedforward=2 * self.d_model,
            token_mode=self.token_mode,
            model_dropout=self.model_dropout,
            seed=self.seed,
            trainer=TrainerConfig(
                epochs=self.epochs,
                lr=self.lr,
                weight_decay=1e-2,
                early_stopping_patience=self.early_stopping_patience,
                scheduler="none",
                seed=self.seed,
            ),
        )
        variants = {}
        for name, fields in json.loads(self.variants).items():
            trainer = {k.removeprefix("trainer."): v for k, v in fields.items() if k.startswith("trainer.")}
            own = {k: v for k, v in fields.items() if not k.startswith("trainer.")}
            variants[name] = replace(base, **own, trainer=replace(base.trainer, **trainer))
        return variants


def load_evaluation_data(
    store: ArtifactStore,
    catalog: DatasetCatalog,
    embeddings: dict[str, ArtifactRef],
    tokens: dict[str, ArtifactRef],
    ranks_ref: ArtifactRef,
    transferability: dict[str, ArtifactRef],
    sources: dict[str, ArtifactRef] | None = None,
) -> EvaluationData:
    """Align models, labelled datasets, accuracies, tokens, source samples and the forward-pass baselines."""
    ranks = load_ranks(ranks_ref, store)
    models = sorted(embeddings)
    datasets = sorted(set(ranks["dataset_key"]) & set(tokens))
    accuracy = (
        ranks.pivot(index="dataset_key", columns="model_key", values="accuracy")
        .reindex(index=datasets, columns=models)
        .to_numpy(dtype=np.float64)
    )
    families = {e.key: e.family for e in catalog.entries()}
    scores: dict[str, np.ndarray] = {k: np.full(accuracy.shape, np.nan) for k in ("logme", "h_score", "forward_seconds")}
    for i, d in enumerate(datasets):
        if d not in transferability:
            continue
        cells = load_transferability(transferability[d], store)["scores"]
        for j, m in enumerate(models):
            if m in cells:
                for key in scores:
                    scores[key][i, j] = cells[m][key]
    have_scores = all(d in transferability for d in datasets)
    return EvaluationData(
        model_names=models,
        dataset_names=datasets,
        accuracy=accuracy,
        families={d: families.get(d, d) for d in datasets},
        dataset_tokens={d: load_tokens(tokens[d], store) for d in datasets},
        model_tokens=np.stack([load_embedding(embeddings[m], store).token for m in models]),
        logme=scores["logme"] if have_scores else None,
        h_score=scores["h_score"] if have_scores else None,
        forward_seconds=scores["forward_seconds"] if have_scores else None,
        model_sources=load_source_descriptors(sources, store, models) if sources else None,
    )


def tokens_without_factory(
    store: ArtifactStore, parameters: dict[str, ArtifactRef], autoencoder_manifest: dict[str, Any], models: Sequence[str]
) -> TokensWithout:
    """Model tokens from an autoencoder retrained (same config) without the held-out models."""
    config = autoencoder_manifest.get("config", {})

    def tokens_without(held_out: Sequence[str]) -> np.ndarray:
        params = {k: load_parameters(parameters[k], store) for k in models}
        seen = {k: v for k, v in params.items() if k not in set(held_out)}
        chunk = next(iter(params.values())).index.chunk_size
        training = AutoEncoderTrainingConfig(
            model=AutoEncoderConfig(
                input_dim=chunk,
                hidden_dim=config.get("hidden_dim", 1024),
                code_dim=config.get("code_dim", 512),
                dropout=config.get("dropout", 0.1),
                reconstruction=config.get("reconstruction", "smooth_l1"),
                l1_weight=config.get("l1_weight", 1e-4),
            ),
            trainer=TrainerConfig(
                epochs=config.get("epochs", 15),
                lr=config.get("lr", 1e-3),
                early_stopping_patience=config.get("early_stopping_patience", 4),
                seed=config.get("seed", 0),
            ),
            batch_size=config.get("batch_size", 64),
            max_chunks_per_model=config.get("max_chunks_per_model", 512),
            val_fraction=config.get("val_fraction", 0.2),
            seed=config.get("seed", 0),
        )
        artifact, _ = train_autoencoder(seen, training)
        return np.stack([embed_model(params[k], artifact).token for k in models])

    return tokens_without


def evaluation_plot(result: EvaluationResult, path: UPath) -> None:
    """Bar chart: mean test weighted tau (truth-ordered) per method and protocol, with fold spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary("test")
    methods = ["random", "prior", "nearest", "nearest_source_profile", "source_similarity", "h_score", "logme",
               "ranker", "two_stage",
               "oracle_nearest"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, protocol in zip(axes, ("family", "models"), strict=True):
        part = summary[(summary["protocol"] == protocol) & summary["method"].isin(methods)]
        part = part.set_index("method").reindex([m for m in methods if m in set(part["method"])])
        ax.bar(part.index, part["weighted_tau_truth_mean"], yerr=part["weighted_tau_truth_std"], capsize=3)
        ax.set_title(f"leave-{protocol}-out (test)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.tick_params(axis="x", rotation=45)
    axes[0].set_ylabel("weighted tau (truth-ordered)")
    fig.tight_layout()
    with path.open("wb") as handle:
        fig.savefig(handle, format="png", dpi=80)
    plt.close(fig)


@asset(
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="evaluation",
    kinds={"pytorch", "pandas"},
    ins={
        "model_parameters": AssetIn(metadata={"all_partitions": True}),
        "model_embeddings": AssetIn(metadata={"all_partitions": True}),
        "model_source_tokens": AssetIn(metadata={"all_partitions": True}),
        "dataset_tokens": AssetIn(metadata={"all_partitions": True}),
        "transferability_scores": AssetIn(partition_mapping=AllPartitionMapping(), metadata={"all_partitions": True}),
    },
    description="Held-out evaluation (leave-family-out, leave-models-out) of the ranker beside random, "
    "the data-free prior, nearest-dataset, LogME, H-score and the two-stage mode.",
)
def ranker_evaluation(
    context: AssetExecutionContext,
    config: RankerEvaluationConfig,
    store: ArtifactStore,
    catalog: DatasetCatalog,
    model_parameters: dict[str, ArtifactRef],
    model_embeddings: dict[str, ArtifactRef],
    model_source_tokens: dict[str, ArtifactRef],
    dataset_tokens: dict[str, ArtifactRef],
    ground_truth_ranks: ArtifactRef,
    autoencoder: ArtifactRef,
    transferability_scores: dict[str, ArtifactRef],
):
    inputs = {"ground_truth_ranks": ground_truth_ranks.content_hash, "autoencoder": autoencoder.content_hash}
    for name, refs in (("params", model_parameters), ("model", model_embeddings), ("tokens", dataset_tokens),
                       ("source", model_source_tokens), ("transferability", transferability_scores)):
        inputs |= {f"{name}:{k}": r.content_hash for k, r in refs.items()}
    families = {e.key: e.family for e in catalog.entries()}

    def build(directory: UPath) -> tuple[str, dict]:
        data = load_evaluation_data(
            store, catalog, model_embeddings, dataset_tokens, ground_truth_ranks, transferability_scores,
            model_source_tokens,
        )
        ae_manifest = store.lookup("autoencoder", None, autoencoder.cache_key) or {}
        tokens_without = tokens_without_factory(store, model_parameters, ae_manifest, data.model_names)
        n_families = len(set(data.families.values()))
        if n_families < 3:  # a held-out family, a validation family and a training family at least
            reason = f"only {n_families} famil{'y' if n_families == 1 else 'ies'} of labelled datasets: need 3"
            write_json(directory / SUMMARY_FILE, {"summary": [], "skipped": reason})
            return hashlib.sha256(reason.encode()).hexdigest(), {"skipped": reason, "n_datasets": len(data.dataset_names),
                                                                 "n_models": len(data.model_names)}
        folds = leave_family_out_folds(data.dataset_names, data.families, val_families=config.val_families,
                                       seed=config.seed)
        folds += leave_models_out_folds(data.model_names, data.dataset_names, data.families,
                                        n_folds=config.models_folds, val_families=config.val_families,
                                        seed=config.seed)
        result = evaluate(data, folds, EvaluationConfig(config.ranker_variants(), two_stage_k=config.two_stage_k or None,
                                                        seed=config.seed), tokens_without)
        with (directory / ROWS_FILE).open("wb") as handle:
            result.rows.to_parquet(handle, index=False)
        summary = result.summary("test")
        write_json(directory / SUMMARY_FILE, {"summary": summary.to_dict(orient="records"),
                                              "selected_variant": result.selected_variant,
                                              "variant_validation": result.variant_validation,
                                              "selected_shortlist": result.selected_shortlist,
                                              "shortlist_validation": result.shortlist_validation,
                                              "folds": result.folds})
        evaluation_plot(result, directory / PLOT_FILE)
        content = hashlib.sha256(pd.util.hash_pandas_object(result.rows, index=False).values.tobytes()).hexdigest()
        return content, {"selected_variant": result.selected_variant,
                         "variant_validation": result.variant_validation,
                         "selected_shortlist": result.selected_shortlist,
                         "n_folds": len(folds), "n_datasets": len(data.dataset_names),
                         "n_models": len(data.model_names), "has_forward_baselines": data.logme is not None}

    result = materialize_cached(
        store, asset="ranker_evaluation", partition=None, code_version=CODE_VERSION,
        config={**config.model_dump(), "families": families}, inputs=inputs, build=build, log=context.log,
    )
    s = result.summary
    if "skipped" in s:
        context.log.warning(f"ranker_evaluation skipped: {s['skipped']}")
        yield Output(result.ref, data_version=result.data_version,
                     metadata={**result.base_metadata(), "skipped": s["skipped"], "n_datasets": s["n_datasets"]})
        return
    directory = result.ref.directory(store)
    saved = read_json(directory / SUMMARY_FILE)
    summary = pd.DataFrame(saved["summary"])
    metadata = {
        **result.base_metadata(),
        "selected_variant": s["selected_variant"],
        "variant_validation_wtau": MetadataValue.json(s["variant_validation"]),
        "two_stage_shortlist": s.get("selected_shortlist", ""),
        "n_folds": s["n_folds"],
        "n_datasets": s["n_datasets"],
        "n_models": s["n_models"],
        "test_summary": MetadataValue.md(
            "weighted tau 'truth' = scipy.stats.weightedtau(accuracy, score, rank=None) (Model Spider); "
            "'scipy' = weightedtau(score, accuracy) (LogME / SFDA papers). Means ± std over folds; "
            "regret in accuracy points. oracle_nearest picks neighbours by the test truth: a ceiling, "
            "not a method.\n\n" + summary_markdown(summary)
        ),
        "plot": png_markdown(directory / PLOT_FILE, "ranker evaluation"),
    }
    for row in summary.itertuples():
        if row.method in ("ranker", "prior", "nearest", "nearest_source_profile", "source_similarity", "logme",
                          "two_stage", "oracle_nearest"):
            metadata[f"{row.protocol}_{row.method}_wtau"] = float(row.weighted_tau_truth_mean)
            metadata[f"{row.protocol}_{row.method}_regret"] = float(row.top1_regret_mean)
    yield Output(result.ref, data_version=result.data_version, metadata=metadata)
