"""Asset ``model_recommendations``: the whole zoo ranked for one dataset, labelled or not."""

import hashlib

import numpy as np
import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetSelection,
    AutomationCondition,
    Config,
    MetadataValue,
    Output,
    asset,
)
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached
from assets.dataset_tokens import load_tokens
from assets.ground_truth_ranks import load_ranks
from assets.model_embeddings import load_embedding
from assets.model_source_tokens import load_source_descriptors
from assets.partitions import datasets_partitions
from assets.ranking_transformer import load_ranker
from ml_core.baselines import data_free_prior
from ml_core.metrics import ranking_report
from ml_core.recommend import recommendation_table
from ml_core.shortlist import default_shortlist_size, two_stage_shortlist
from resources.artifact_store import ArtifactStore

CODE_VERSION = "5"  # 2: scores with model names (baseline features); 3: and source samples; 4: shortlist;
# 5: coverage ties broken by the ranker whatever the float rounding
RECOMMENDATIONS_FILE = "recommendations.parquet"


# Refresh when embeddings, tokens or the ranker change (eager), but do not wait for every model
# partition: a model whose embedding is missing (e.g. a broken checkpoint) must not block the rest.
REFRESH_WHEN_INPUTS_CHANGE = AutomationCondition.eager().replace(
    "any_deps_missing",
    AutomationCondition.any_deps_missing().ignore(AssetSelection.assets("model_embeddings", "model_source_tokens")),
)


class RecommendationConfig(Config):
    top_k_shown: int = 10
    shortlist_size: int = 0  # models marked for a two-stage LogME run; 0: a third of the zoo


@asset(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="ranking",
    kinds={"pandas", "parquet"},
    ins={
        "model_embeddings": AssetIn(partition_mapping=AllPartitionMapping(), metadata={"all_partitions": True}),
        "model_source_tokens": AssetIn(partition_mapping=AllPartitionMapping(), metadata={"all_partitions": True}),
    },
    check_specs=[AssetCheckSpec("every_model_ranked", asset="model_recommendations")],
    automation_condition=REFRESH_WHEN_INPUTS_CHANGE,
    description="The ranked zoo for one dataset (rank 0 = recommended first), with the prior and, if known, accuracy.",
)
def model_recommendations(
    context: AssetExecutionContext,
    config: RecommendationConfig,
    store: ArtifactStore,
    ranking_transformer: ArtifactRef,
    dataset_tokens: ArtifactRef,
    model_embeddings: dict[str, ArtifactRef],
    model_source_tokens: dict[str, ArtifactRef],
    ground_truth_ranks: ArtifactRef,
):
    dataset_key = context.partition_key
    inputs = {
        "ranking_transformer": ranking_transformer.content_hash,
        "dataset_tokens": dataset_tokens.content_hash,
        "ground_truth_ranks": ground_truth_ranks.content_hash,
    } | {f"model:{k}": r.content_hash for k, r in model_embeddings.items()}
    inputs |= {f"source:{k}": r.content_hash for k, r in model_source_tokens.items() if k in model_embeddings}

    def build(directory: UPath) -> tuple[str, dict]:
        ranker = load_ranker(ranking_transformer, store)
        model_keys = sorted(model_embeddings)
        model_tokens = np.stack([load_embedding(model_embeddings[k], store).token for k in model_keys])
        sources = load_source_descriptors(model_source_tokens, store, model_keys)
        scores = ranker.score(load_tokens(dataset_tokens, store), model_tokens, model_keys, sources)
        ranks = load_ranks(ground_truth_ranks, store)
        accuracy_by_dataset = ranks.pivot(index="dataset_key", columns="model_key", values="accuracy").reindex(
            columns=model_keys
        )
        splits = ranker.info.get("splits", {})
        train = [d for d, split in splits.items() if split == "train" and d in accuracy_by_dataset.index]
        prior = data_free_prior(accuracy_by_dataset.loc[train].to_numpy()) if train else None
        accuracy = (
            accuracy_by_dataset.loc[dataset_key].to_numpy(dtype=np.float64)
            if dataset_key in accuracy_by_dataset.index
            else None
        )
        k = config.shortlist_size or default_shortlist_size(len(model_keys))
        short = two_stage_shortlist(scores, ranker.history(model_keys), k)
        table = recommendation_table(model_keys, scores, prior_scores=prior, accuracy=accuracy, shortlist=short)
        with (directory / RECOMMENDATIONS_FILE).open("wb") as handle:
            table.to_parquet(handle, index=False)
        summary: dict = {
            "n_models": len(model_keys),
            "split": splits.get(dataset_key, "unlabelled"),
            "top_models": table["model"].head(config.top_k_shown).tolist(),
            "shortlist": [model_keys[i] for i in short],
        }
        if accuracy is not None and np.sum(~np.isnan(accuracy)) >= 2:
            summary["ranker"] = ranking_report(accuracy, scores)
            if prior is not None:
                summary["prior"] = ranking_report(accuracy, prior)
        content = hashlib.sha256(pd.util.hash_pandas_object(table, index=False).values.tobytes()).hexdigest()
        return content, summary

    result = materialize_cached(
        store,
        asset="model_recommendations",
        partition=dataset_key,
        code_version=CODE_VERSION,
        config=config.model_dump(),
        inputs=inputs,
        build=build,
        log=context.log,
    )
    s = result.summary
    table = load_recommendations(result.ref, store)
    metadata = {
        **result.base_metadata(),
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
    yield Output(result.ref, data_version=result.data_version, metadata=metadata)
    yield AssetCheckResult(
        check_name="every_model_ranked",
        passed=len(table) == len(model_embeddings) and bool(np.isfinite(table["score"]).all()),
        metadata={"n_ranked": len(table), "n_models": len(model_embeddings)},
    )


def load_recommendations(ref: ArtifactRef, store: ArtifactStore) -> pd.DataFrame:
    with (ref.directory(store) / RECOMMENDATIONS_FILE).open("rb") as handle:
        return pd.read_parquet(handle)
