"""Asset ``model_recommendations``: the whole zoo ranked for one dataset, labelled or not.

With ``forward_passes: k`` in its config, ``k`` models are measured on the dataset's labelled training
images (a linear probe, or LogME, on their features), one at a time, each chosen after the results
before it, and the zoo is ranked by the budgeted mode (:mod:`ml_core.ranking.budget`). The measurements
are the cells ``transferability_scores`` caches: a model measured once is never run again on the same
dataset content, by either asset.

Each model's costs (``model_costs``: parameters, size, GFLOPs, CPU latency) are columns of the table, and
``on_front`` marks the Pareto front of predicted score vs cost (:mod:`ml_core.ranking.pareto`); the
metadata's ``cost_front`` plots it.
"""

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

from assets.shared.artifacts import (
    Artifact,
    all_partitions,
    content_hashes,
    embedding_tokens,
    materialize_asset,
    png_markdown,
    source_descriptors,
)
from assets.shared.configs import dagster_config
from assets.shared.loaders import FRONT_PLOT_FILE, RECOMMENDATIONS_FILE, write_parquet
from assets.shared.partitions import datasets_partitions
from assets.shared.transferability_cells import cached_cell, dataset_images
from ml_core.ground_truth import TransferabilityConfig, column_inputs, zoo_cells
from ml_core.ranking import RecommendationConfig, recommend
from ml_core.ranking.pareto import COST_LABELS, front_plot, with_costs
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo

# 2: scores with model names (baseline features); 3: and source samples; 4: shortlist;
# 5: coverage ties broken by the ranker whatever the float rounding
# 6: a budget of forward passes (config forward_passes); 7: each model's costs and the Pareto front of score vs cost
CODE_VERSION = "8"  # 8: why columns (nearest datasets, their results, source similarity)
RecommendationAssetConfig = dagster_config(RecommendationConfig(), "RecommendationAssetConfig")


def refresh_when_inputs_change(ignore_missing: AssetSelection) -> AutomationCondition:
    """Eager, but an upstream materialization counts only when its data version changed: a cache hit
    (same content, same data version) requests nothing downstream. Missing partitions of
    ``ignore_missing`` do not block the rest (e.g. a model whose embedding failed on a broken checkpoint)."""
    changed = AutomationCondition.any_deps_match(
        AutomationCondition.data_version_changed() | AutomationCondition.will_be_requested()
    ).with_label("any_deps_data_changed")
    return AutomationCondition.eager().replace("any_deps_updated", changed).replace(
        "any_deps_missing", AutomationCondition.any_deps_missing().ignore(ignore_missing)
    )


# Refresh when embeddings, tokens or the ranker change (eager), but do not wait for every model
# partition: a model whose embedding is missing (e.g. a broken checkpoint) must not block the rest.
REFRESH_WHEN_INPUTS_CHANGE = refresh_when_inputs_change(
    AssetSelection.assets("model_embeddings", "model_source_tokens", "model_costs"))


#: the columns of the table shown inline, in order (every column: metadata ``full_ranking``, the parquet file)
INLINE_COLUMNS = ("rank", "model", "score", "prior_score", "shortlist", "latency_ms_b1", "on_front")
#: Dagster's UI shows a markdown value inline only under 1,000 characters, else behind "[Show Markdown]"
INLINE_MARKDOWN_CHARS = 1000


def ranking_markdown(table: pd.DataFrame, shown: int, columns: tuple[str, ...] | None = None,
                     max_chars: int | None = None) -> str:
    """The first ``shown`` rows of a ranking (only ``columns``, those it has, if given), numbers to 3 decimals,
    under a line saying how many it shows; with ``max_chars``, fewer rows (at least one) until it is shorter."""
    n = len(table)
    view = table if columns is None else table[[c for c in columns if c in table.columns]]
    shown = min(shown, n)
    while True:
        cut = shown < n or view.shape[1] < table.shape[1]
        what = "all of them" if shown < n else "every column"
        where = f" ({what}: metadata `full_ranking`, or the parquet file at `path`)" if cut else ""
        text = f"{shown} of {n} models{where}\n\n" + view.head(shown).round(3).to_markdown(index=False)
        if max_chars is None or len(text) < max_chars or shown <= 1:
            return text
        shown -= 1


@asset(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    group_name="ranking",
    kinds={"pandas", "parquet"},
    ins={
        "model_embeddings": all_partitions(all_upstream=True),
        "model_source_tokens": all_partitions(all_upstream=True),
        "model_costs": all_partitions(all_upstream=True),
    },
    check_specs=[AssetCheckSpec("every_model_ranked", asset="model_recommendations")],
    automation_condition=REFRESH_WHEN_INPUTS_CHANGE,
    description="The ranked zoo for one dataset (rank 0 = recommended first), with the prior and, if known, "
    "accuracy; with forward_passes k > 0, k models measured on the dataset (linear probe) guide the ranking.",
)
def model_recommendations(
    context: AssetExecutionContext,
    config: RecommendationAssetConfig,
    store: ArtifactStore,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
    ranking_transformer: Artifact,
    dataset_tokens: Artifact,
    model_embeddings: dict[str, Artifact],
    model_source_tokens: dict[str, Artifact],
    ground_truth_ranks: Artifact,
    model_costs: dict[str, Artifact],
):
    dataset_key = context.partition_key
    inputs = {
        "ranking_transformer": ranking_transformer.content_hash,
        "dataset_tokens": dataset_tokens.content_hash,
        "ground_truth_ranks": ground_truth_ranks.content_hash,
    } | content_hashes(model_embeddings, "model")
    inputs |= content_hashes({k: a for k, a in model_source_tokens.items() if k in model_embeddings}, "source")
    inputs |= content_hashes({k: a for k, a in model_costs.items() if k in model_embeddings}, "cost")
    recommendation_config = config.to_ml()
    if recommendation_config.forward_passes > 0:  # the measured models' checkpoints and the images count too
        entry = catalog.entry(dataset_key)
        scoring = TransferabilityConfig()  # the images transferability_scores scores: its cells are shared
        dataset_fp = store.fingerprints.folder(entry.path)
        cells = {c.key: c for c in zoo_cells(zoo.entries(), store.fingerprints.file_sha256) if c.key in model_embeddings}
        inputs |= {"dataset": dataset_fp} | column_inputs(list(cells.values()))
        images = dataset_images(entry.path, scoring)
        proxies = recommendation_config.proxies()

        def measure_model(models: list[str]):  # noqa: ANN202 - the measure the budgeted mode calls
            def measure(j: int) -> float | tuple[float, ...]:
                cell = cells.get(models[j])
                if cell is None or cell.card is None:
                    context.log.warning(f"{models[j]}: cannot be measured ({cell.problem if cell else 'not in the zoo'})")
                    return float("nan")
                outcome, hit = cached_cell(store, cell, dataset_key, dataset_fp, images, scoring)
                if "error" in outcome:
                    context.log.warning(f"{models[j]}: not measured on {dataset_key}: {outcome['error']}")
                    return float("nan")
                values = tuple(float(outcome[proxy]) for proxy in proxies)
                context.log.info(f"measured {models[j]} on {dataset_key}: "
                                 + ", ".join(f"{p} {v:.4f}" for p, v in zip(proxies, values, strict=True))
                                 + (" (cached)" if hit else ""))
                return values if len(values) > 1 else values[0]

            return measure

    def build(directory: UPath) -> tuple[str, dict]:
        models = sorted(model_embeddings)
        tokens = embedding_tokens(model_embeddings)
        recommendation = recommend(
            ranking_transformer.load(), dataset_key, dataset_tokens.load(), models,
            np.stack([tokens[m] for m in models]), ground_truth_ranks.load(),
            recommendation_config, source_descriptors(model_source_tokens, models),
            measure_model(models) if recommendation_config.forward_passes > 0 else None,
        )
        costs = {m: a.load().columns() for m, a in model_costs.items() if m in model_embeddings}
        table, axis = with_costs(recommendation.table, costs)
        write_parquet(table, directory / RECOMMENDATIONS_FILE)
        if axis is not None:
            with (directory / FRONT_PLOT_FILE).open("wb") as handle:
                front_plot(table, axis, handle, f"{dataset_key}: predicted score vs cost")
        content = hashlib.sha256(pd.util.hash_pandas_object(table, index=False).values.tobytes()).hexdigest()
        return content, {**recommendation.summary, "front_cost": axis, "front": table.loc[table["on_front"], "model"].tolist(),
                         "n_unknown_cost": int(table[axis].isna().sum()) if axis else len(table)}

    result = materialize_asset(context, store, config=config.model_dump(), inputs=inputs, build=build)
    s = result.summary
    table = result.artifact(store).load()
    metadata = {
        "dataset": dataset_key,
        "dataset_split": s["split"],
        "n_models": s["n_models"],
        "recommended": s["top_models"][0] if s["top_models"] else "",
        "two_stage_shortlist": MetadataValue.json(s["shortlist"]),
        "ranking": s.get("ranking", "ranker"),
        "forward_passes": s.get("forward_passes", 0),
        "measured_models": MetadataValue.json(s.get("measured", {})),
        "nearest_training_datasets": ", ".join(f"{d} ({sim:.3f})" for d, sim in s.get("nearest_datasets", [])) or "none",
        # inline in the UI: the main columns of the first rows, under Dagster's inline limit
        "recommendations": MetadataValue.md(ranking_markdown(table, config.top_k_shown, INLINE_COLUMNS,
                                                             INLINE_MARKDOWN_CHARS)),
    }
    if s.get("front_cost"):
        metadata["pareto_front"] = MetadataValue.json({"cost": COST_LABELS[s["front_cost"]], "models": s["front"],
                                                        "models_of_unknown_cost": s["n_unknown_cost"]})
        metadata["cost_front"] = png_markdown(result.ref.directory(store) / FRONT_PLOT_FILE, "predicted score vs cost")
    if "full_ranking" in metadata["recommendations"].md_str:  # the whole ranking, every column, one click away
        metadata["full_ranking"] = MetadataValue.md(ranking_markdown(table, len(table)))
    for method in ("ranker", "budget", "prior"):  # budget: the ranking shown, when k models were measured
        if method in s:
            metadata[f"{method}_weighted_tau_truth"] = round(float(s[method]["weighted_tau_truth"]), 3)
            # the summary's regret is a fraction of accuracy; shown in accuracy points, as everywhere
            metadata[f"{method}_top1_regret_points"] = round(100.0 * float(s[method]["top1_regret"]), 2)
    yield result.output(metadata)
    yield AssetCheckResult(
        check_name="every_model_ranked",
        passed=len(table) == len(model_embeddings) and bool(np.isfinite(table["score"]).all()),
        metadata={"n_ranked": len(table), "n_models": len(model_embeddings)},
    )
