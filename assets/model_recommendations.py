"""Asset ``model_recommendations``: the whole zoo ranked for one dataset, labelled or not."""

import hashlib

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    MetadataValue,
    asset,
)
from upath import UPath

from assets.artifacts import (
    Artifact,
    all_partitions,
    content_hashes,
    embedding_tokens,
    materialize_asset,
    source_descriptors,
)
from assets.configs import dagster_config
from assets.loaders import RECOMMENDATIONS_FILE, write_parquet
from assets.partitions import datasets_partitions
from ml_core.ranking import RecommendationConfig, recommend
from resources.artifact_store import ArtifactStore

CODE_VERSION = "5"  # 2: scores with model names (baseline features); 3: and source samples; 4: shortlist;
# 5: coverage ties broken by the ranker whatever the float rounding
RecommendationAssetConfig = dagster_config(RecommendationConfig(), "RecommendationAssetConfig")


# Refresh when embeddings, tokens or the ranker change (eager), but do not wait for every model
# partition: a model whose embedding is missing (e.g. a broken checkpoint) must not block the rest.
REFRESH_WHEN_INPUTS_CHANGE = AutomationCondition.eager().replace(
    "any_deps_missing",
    AutomationCondition.any_deps_missing().ignore(AssetSelection.assets("model_embeddings", "model_source_tokens")),
)


@asset(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    group_name="ranking",
    kinds={"pandas", "parquet"},
    ins={
        "model_embeddings": all_partitions(all_upstream=True),
        "model_source_tokens": all_partitions(all_upstream=True),
    },
    check_specs=[AssetCheckSpec("every_model_ranked", asset="model_recommendations")],
    automation_condition=REFRESH_WHEN_INPUTS_CHANGE,
    description="The ranked zoo for one dataset (rank 0 = recommended first), with the prior and, if known, accuracy.",
)
def model_recommendations(
    context: AssetExecutionContext,
    config: RecommendationAssetConfig,
    store: ArtifactStore,
    ranking_transformer: Artifact,
    dataset_tokens: Artifact,
    model_embeddings: dict[str, Artifact],
    model_source_tokens: dict[str, Artifact],
    ground_truth_ranks: Artifact,
):
    dataset_key = context.partition_key
    inputs = {
        "ranking_transformer": ranking_transformer.content_hash,
        "dataset_tokens": dataset_tokens.content_hash,
        "ground_truth_ranks": ground_truth_ranks.content_hash,
    } | content_hashes(model_embeddings, "model")
    inputs |= content_hashes({k: a for k, a in model_source_tokens.items() if k in model_embeddings}, "source")

    def build(directory: UPath) -> tuple[str, dict]:
        models = sorted(model_embeddings)
        tokens = embedding_tokens(model_embeddings)
        recommendation = recommend(
            ranking_transformer.load(), dataset_key, dataset_tokens.load(), models,
            np.stack([tokens[m] for m in models]), ground_truth_ranks.load(),
            config.to_ml(), source_descriptors(model_source_tokens, models),
        )
        write_parquet(recommendation.table, directory / RECOMMENDATIONS_FILE)
        table = recommendation.table
        content = hashlib.sha256(pd.util.hash_pandas_object(table, index=False).values.tobytes()).hexdigest()
        return content, recommendation.summary

    result = materialize_asset(context, store, config=config.model_dump(), inputs=inputs, build=build)
    s = result.summary
    table = result.artifact(store).load()
    metadata = {
        "dataset": dataset_key,
        "dataset_split": s["split"],
        "n_models": s["n_models"],
        "recommended": s["top_models"][0] if s["top_models"] else "",
        "two_stage_shortlist": MetadataValue.json(s["shortlist"]),
        "recommendations": MetadataValue.md(table.head(config.top_k_shown).round(4).to_markdown(index=False)),
    }
    for method in ("ranker", "prior"):
        if method in s:
            metadata[f"{method}_weighted_tau_truth"] = float(s[method]["weighted_tau_truth"])
            metadata[f"{method}_top1_regret"] = float(s[method]["top1_regret"])
    yield result.output(metadata)
    yield AssetCheckResult(
        check_name="every_model_ranked",
        passed=len(table) == len(model_embeddings) and bool(np.isfinite(table["score"]).all()),
        metadata={"n_ranked": len(table), "n_models": len(model_embeddings)},
    )
