"""Asset ``embedding_probes``: do the model embeddings mean anything? Linear probes on held-out models.

For each fold of the models, the weight embedder (configured as the current ``autoencoder``) is
retrained on the other models' weights alone; linear probes fitted on their embeddings predict the
held-out models' architecture, pre-training source, source accuracy (from the cards) and mean
transfer accuracy (from the ground truth), beside the same probes on trivial descriptors (counts and
per-depth weight statistics) and random vectors (:mod:`ml_core.evaluation.probes`). Its check says
whether the embedding beats the best trivial descriptor on enough properties.
"""

import hashlib

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, MetadataValue, asset
from upath import UPath

from assets.shared.artifacts import Artifact, LoadedArtifacts, all_partitions, content_hashes, materialize_asset
from assets.shared.configs import dagster_config
from assets.shared.loaders import PROBES_FILE, write_parquet
from ml_core.evaluation.probes import (
    ProbeConfig,
    TooFewModels,
    model_properties,
    probe_markdown,
    probe_verdict,
    run_probes,
)
from ml_core.weights import embedder_config
from resources.artifact_store import ArtifactStore
from resources.model_zoo import ModelZoo, cards_fingerprint

CODE_VERSION = "1"
ProbesAssetConfig = dagster_config(ProbeConfig(), "ProbesAssetConfig")


@asset(
    code_version=CODE_VERSION,
    group_name="models",
    kinds={"scikitlearn", "parquet"},
    ins={"model_parameters": all_partitions()},
    check_specs=[AssetCheckSpec("embedding_beats_trivial_descriptors", asset="embedding_probes")],
    description="Linear probes on held-out models (the embedder retrained without them): architecture, "
    "source task, source accuracy and mean transfer predicted from the embedding, beside trivial weight "
    "statistics and random vectors.",
)
def embedding_probes(
    context: AssetExecutionContext,
    config: ProbesAssetConfig,
    store: ArtifactStore,
    zoo: ModelZoo,
    model_parameters: dict[str, Artifact],
    autoencoder: Artifact,
    ground_truth_ranks: Artifact,
):
    probe_config = config.to_ml()
    # a malformed card spoils only its own model's properties
    cards = zoo.cards(model_parameters, warn=lambda message: context.log.warning(f"embedding_probes: {message}"))
    inputs = {"autoencoder": autoencoder.content_hash, "ground_truth_ranks": ground_truth_ranks.content_hash,
              "cards": cards_fingerprint(cards), **content_hashes(model_parameters, "params")}

    def build(directory: UPath) -> tuple[str, dict]:
        training = embedder_config(autoencoder.load())
        try:
            frame = run_probes(LoadedArtifacts(model_parameters), model_properties(cards, ground_truth_ranks.load()),
                               training, probe_config)
        except TooFewModels as error:  # a tiny zoo: nothing to hold out; the rest of the graph goes on
            write_parquet(pd.DataFrame(columns=["describer", "property", "score", "n", "metric", "seed"]),
                          directory / PROBES_FILE)
            return hashlib.sha256(str(error).encode()).hexdigest(), {"skipped": str(error), "method": training.method}
        write_parquet(frame, directory / PROBES_FILE)
        verdict = probe_verdict(frame, "embedding", probe_config.min_properties_beaten)
        return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values.tobytes()).hexdigest(), {
            "method": training.method, **verdict, "table": probe_markdown(frame),
            "n_models": len(model_parameters), "seeds": list(probe_config.seeds),
        }

    result = materialize_asset(context, store, config=config.model_dump(), inputs=inputs, build=build)
    s = result.summary
    if "skipped" in s:
        context.log.warning(f"embedding_probes skipped: {s['skipped']}")
        yield result.output({"skipped": s["skipped"], "embedder": s["method"]})
        yield AssetCheckResult(check_name="embedding_beats_trivial_descriptors", passed=False,
                               metadata={"skipped": s["skipped"]}, description="skipped: " + s["skipped"])
        return
    yield result.output({
        "embedder": s["method"],
        "n_models": s["n_models"],
        "seeds": ", ".join(map(str, s["seeds"])),
        "probe_table": MetadataValue.md(
            "Held-out models (the embedder retrained without them); accuracy for architecture / source "
            "(source: descriptors centred per architecture), R^2 for the rest.\n\n" + s["table"]),
        "margins_over_best_trivial": MetadataValue.json({k: round(v, 4) for k, v in s["margins"].items()}),
        "properties_beaten": ", ".join(s["beaten"]) or "none",
        "properties_tied_at_ceiling": ", ".join(s["ceiling_ties"]) or "none",
    })
    yield AssetCheckResult(
        check_name="embedding_beats_trivial_descriptors",
        passed=bool(s["passed"]),
        metadata={"properties_beaten": ", ".join(s["beaten"]) or "none",
                  "properties_tied_at_ceiling": ", ".join(s["ceiling_ties"]) or "none",
                  "required": probe_config.min_properties_beaten,
                  **{f"margin_{k}": round(float(v), 3) for k, v in s["margins"].items()}},
        description="on held-out models, the embedding's probes beat the best trivial descriptor (weight statistics, "
        f"counts, random) on at least {probe_config.min_properties_beaten} of the 4 properties (a property where "
        "both are perfect counts as matched)",
    )
