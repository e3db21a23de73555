"""Asset ``ranker_evaluation``: the learned ranker against the baselines on held-out data.

Leave-family-out folds (every dataset of a family held out together) and leave-models-out
folds (models never seen by the autoencoder or the ranker), with the data-free prior, the
nearest-dataset baseline, LogME and H-score beside the learned ranker and its two-stage mode.
The ranker variant reported is chosen on validation datasets only. See
:mod:`ml_core.evaluation`.
"""

import hashlib

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset
from upath import UPath

from assets.shared.artifacts import (
    Artifact,
    LoadedArtifacts,
    all_partitions,
    content_hashes,
    evaluation_inputs,
    materialize_asset,
    model_attributes,
    png_markdown,
)
from assets.shared.configs import RANKER_TRAINING_EXCLUDED, dagster_config, nested
from assets.shared.loaders import EVALUATION_PLOT_FILE, EVALUATION_ROWS_FILE, EVALUATION_SUMMARY_FILE, write_parquet
from ml_core.artifacts import write_json
from ml_core.evaluation import (
    EvaluationConfig,
    evaluate,
    evaluation_folds,
    evaluation_plot,
    retrained_tokens,
    summary_markdown,
)
from ml_core.weights import embedder_config
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo, cards_fingerprint

# 2: two-stage rows with the prior's and nearest-dataset's shortlists; 3: variant ensemble; 4: source
# similarity (baseline and ranker input), coverage shortlists, the oracle-neighbour ceiling, a linear variant;
# 5: coverage ties broken by the first stage whatever the float rounding; 6: nearest-dataset by source
# profile (a baseline row); 7: one config (variants named, changes of one base)
# 8: leave-models-out folds retrain the configured weight embedder
CODE_VERSION = "9"  # 9: the size and source-accuracy priors, the linear probe, a budget of forward passes
# ``seed`` seeds the folds and every variant's training; the widths come from the data
EvaluationAssetConfig = dagster_config(
    EvaluationConfig(), "EvaluationAssetConfig",
    exclude=nested("base", RANKER_TRAINING_EXCLUDED),
)
REPORTED = ("ranker", "prior", "best_prior", "prior_size", "prior_source_accuracy", "probe", "nearest", "nearest_source_profile", "source_similarity", "weight_neighbours",
            "source+weights", "logme", "probe+prior", "probe+logme+prior", "best_all_pass", "two_stage",
            "oracle_nearest")


@asset(
    code_version=CODE_VERSION,
    group_name="evaluation",
    kinds={"pytorch", "pandas"},
    ins={
        "model_parameters": all_partitions(),
        "model_embeddings": all_partitions(),
        "model_source_tokens": all_partitions(),
        "dataset_tokens": all_partitions(),
        "transferability_scores": all_partitions(all_upstream=True),
    },
    description="Held-out evaluation (leave-family-out, leave-models-out) of the ranker beside random, "
    "the data-free prior, nearest-dataset, LogME, H-score and the two-stage mode.",
)
def ranker_evaluation(
    context: AssetExecutionContext,
    config: EvaluationAssetConfig,
    store: ArtifactStore,
    catalog: DatasetCatalog,
    zoo: ModelZoo,
    model_parameters: dict[str, Artifact],
    model_embeddings: dict[str, Artifact],
    model_source_tokens: dict[str, Artifact],
    dataset_tokens: dict[str, Artifact],
    ground_truth_ranks: Artifact,
    autoencoder: Artifact,
    transferability_scores: dict[str, Artifact],
):
    evaluation = config.to_ml()
    inputs = {"ground_truth_ranks": ground_truth_ranks.content_hash, "autoencoder": autoencoder.content_hash}
    for name, artifacts in (("params", model_parameters), ("model", model_embeddings), ("tokens", dataset_tokens),
                            ("source", model_source_tokens), ("transferability", transferability_scores)):
        inputs |= content_hashes(artifacts, name)
    families = {e.key: e.family for e in catalog.entries()}
    cards = zoo.cards(model_parameters, warn=lambda message: context.log.warning(f"ranker_evaluation: {message}"))
    inputs["cards"] = cards_fingerprint(cards)  # the size and source-accuracy priors read them

    def build(directory: UPath) -> tuple[str, dict]:
        data = evaluation_inputs(ground_truth_ranks, model_embeddings, dataset_tokens, families,
                                 transferability_scores, model_source_tokens,
                                 model_attributes(cards, model_parameters))
        n_families = len(set(data.families.values()))
        if n_families < 3:  # a held-out family, a validation family and a training family at least
            reason = f"only {n_families} famil{'y' if n_families == 1 else 'ies'} of labelled datasets: need 3"
            write_json(directory / EVALUATION_SUMMARY_FILE, {"summary": [], "skipped": reason})
            return hashlib.sha256(reason.encode()).hexdigest(), {"skipped": reason, "n_datasets": len(data.dataset_names),
                                                                 "n_models": len(data.model_names)}
        tokens_without = retrained_tokens(LoadedArtifacts(model_parameters), embedder_config(autoencoder.load()),
                                          data.model_names)
        folds = evaluation_folds(data, evaluation)
        result = evaluate(data, folds, evaluation, tokens_without)
        write_parquet(result.rows, directory / EVALUATION_ROWS_FILE)
        summary = result.summary("test")
        write_json(directory / EVALUATION_SUMMARY_FILE, {"summary": summary.to_dict(orient="records"),
                                                         "selected_variant": result.selected_variant,
                                                         "variant_validation": result.variant_validation,
                                                         "selected_shortlist": result.selected_shortlist,
                                                         "shortlist_validation": result.shortlist_validation,
                                                         "selected_priors": result.selected_priors,
                                                         "selected_budget": result.selected_budget,
                                                         "budget_validation": result.budget_validation,
                                                         "selected_all_pass": result.selected_all_pass,
                                                         "folds": result.folds})
        with (directory / EVALUATION_PLOT_FILE).open("wb") as handle:
            evaluation_plot(result, handle)
        return result.content_hash(), {"selected_variant": result.selected_variant,
                         "variant_validation": result.variant_validation,
                         "selected_shortlist": result.selected_shortlist,
                         "selected_priors": result.selected_priors, "selected_budget": result.selected_budget,
                         "selected_all_pass": result.selected_all_pass,
                         "n_folds": len(folds), "n_datasets": len(data.dataset_names),
                         "n_models": len(data.model_names), "has_forward_baselines": data.logme is not None}

    result = materialize_asset(
        context, store, config={**config.model_dump(), "families": families}, inputs=inputs, build=build
    )
    s = result.summary
    if "skipped" in s:
        context.log.warning(f"ranker_evaluation skipped: {s['skipped']}")
        yield result.output({"skipped": s["skipped"], "n_datasets": s["n_datasets"]})
        return
    summary = pd.DataFrame(result.artifact(store).load()["summary"])
    metadata = {
        "selected_variant": s["selected_variant"],
        "variant_validation_wtau": MetadataValue.json(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in s["variant_validation"].items()}),
        "two_stage_shortlist": s.get("selected_shortlist", ""),
        "best_prior": MetadataValue.json(s.get("selected_priors", {})),
        "budget_setting": s.get("selected_budget", ""),
        "best_all_pass": s.get("selected_all_pass", ""),
        "n_folds": s["n_folds"],
        "n_datasets": s["n_datasets"],
        "n_models": s["n_models"],
        "test_summary": MetadataValue.md(
            "weighted tau 'truth' = scipy.stats.weightedtau(accuracy, score, rank=None) (Model Spider); "
            "'scipy' = weightedtau(score, accuracy) (LogME / SFDA papers). Means ± std over folds; "
            "regret in accuracy points. oracle_nearest picks neighbours by the test truth: a ceiling, "
            "not a method.\n\n" + summary_markdown(summary)
        ),
        "plot": png_markdown(result.ref.directory(store) / EVALUATION_PLOT_FILE, "ranker evaluation"),
    }
    for row in summary.itertuples():
        if row.method in REPORTED or row.method.startswith("budget@"):
            # rounded for reading (the artifact's summary keeps every digit): tau to 3 decimals, regret in points to 1
            metadata[f"{row.protocol}_{row.method}_wtau"] = round(float(row.weighted_tau_truth_mean), 3)
            metadata[f"{row.protocol}_{row.method}_regret"] = round(float(row.top1_regret_mean), 1)
    yield result.output(metadata)
