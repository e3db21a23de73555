"""What a materialized artifact store holds, read back as ml_core objects (for the CLI and benchmarks).

Each function reads the *current* materialization of each partition (the ``_refs`` pointers the
IO manager writes), exactly what the assets downstream would receive.
"""

from __future__ import annotations

from pathlib import Path

from assets.shared.artifacts import (
    Artifact,
    LoadedArtifacts,
    current_artifact,
    current_artifacts,
    evaluation_inputs,
    model_attributes,
)
from assets.shared.loaders import EVALUATION_ROWS_FILE, read_parquet
from ml_core.artifacts import read_json
from ml_core.evaluation import EvaluationData, EvaluationResult
from ml_core.weights import WeightEmbedderConfig, embedder_config
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from worlds.world import WORLD_MANIFEST_NAME, WorldManifest


def materialized(store: ArtifactStore, asset: str, partition: str | None = None) -> Artifact:
    """The current artifact of ``asset[partition]``; FileNotFoundError when it was never materialized."""
    artifact = current_artifact(store, asset, partition)
    if artifact is None:
        raise FileNotFoundError(f"{asset}[{partition or '-'}] has not been materialized in {store.root}: "
                                f"run `modelrec demo` (or `modelrec run`) first")
    return artifact


def ground_truth(store: ArtifactStore):  # noqa: ANN201 - the ground-truth frame
    """The current ``ground_truth_ranks`` frame."""
    return materialized(store, "ground_truth_ranks").load()


def store_evaluation_data(store: ArtifactStore, catalog: DatasetCatalog, zoo: ModelZoo) -> EvaluationData:
    """The held-out evaluation's inputs, as ``ranker_evaluation`` reads them (from the store's current ones)."""
    parameters = current_artifacts(store, "model_parameters")
    return evaluation_inputs(
        materialized(store, "ground_truth_ranks"),
        current_artifacts(store, "model_embeddings"),
        current_artifacts(store, "dataset_tokens"),
        {e.key: e.family for e in catalog.entries()},
        current_artifacts(store, "transferability_scores"),
        current_artifacts(store, "model_source_tokens"),
        model_attributes(zoo.cards(parameters), parameters),
    )


def autoencoder_training(store: ArtifactStore) -> WeightEmbedderConfig:
    """The training config of the current weight embedder (to retrain it the same way without some models)."""
    return embedder_config(materialized(store, "autoencoder").load())


def model_parameters(store: ArtifactStore) -> LoadedArtifacts:
    """Every model's flattened parameters, ``{model: ModelParameters}``, each read on first use."""
    return LoadedArtifacts(current_artifacts(store, "model_parameters"))


def world_seed(world_root: Path) -> int | None:
    """The seed a built-in world under ``world_root`` was generated with (None: no world manifest there)."""
    manifest = world_root / WORLD_MANIFEST_NAME
    return WorldManifest.model_validate(read_json(manifest)).seed if manifest.is_file() else None


def materialized_evaluation(store: ArtifactStore) -> tuple[EvaluationResult, dict]:
    """The current ``ranker_evaluation`` as an :class:`EvaluationResult` (its rows and every choice
    validation made) and the config it ran with, so a benchmark reads it instead of recomputing it."""
    artifact = materialized(store, "ranker_evaluation")
    saved = artifact.load()
    if "skipped" in saved:
        raise ValueError(f"ranker_evaluation in {store.root} was skipped: {saved['skipped']}")
    result = EvaluationResult(
        rows=read_parquet(artifact.directory / EVALUATION_ROWS_FILE),
        selected_variant=saved["selected_variant"], variant_validation=saved["variant_validation"],
        folds=saved.get("folds", []), selected_shortlist=saved.get("selected_shortlist", ""),
        shortlist_validation=saved.get("shortlist_validation", {}), selected_priors=saved.get("selected_priors", {}),
        budget_validation=saved.get("budget_validation", {}), selected_budget=saved.get("selected_budget", ""),
        selected_all_pass=saved.get("selected_all_pass", ""))
    return result, artifact.manifest()["config"]
