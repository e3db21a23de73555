"""What a materialized artifact store holds, read back as ml_core objects (for the CLI and benchmarks).

Each function reads the *current* materialization of each partition (the ``_refs`` pointers the
IO manager writes), exactly what the assets downstream would receive.
"""

from __future__ import annotations

from assets.artifacts import LoadedArtifacts, current_artifact, current_artifacts, source_descriptors
from ml_core.evaluation import EvaluationData, evaluation_data
from ml_core.weights import AutoEncoderTrainingConfig
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog


def _required(store: ArtifactStore, asset: str):  # noqa: ANN202 - an Artifact
    artifact = current_artifact(store, asset, None)
    if artifact is None:
        raise FileNotFoundError(f"{asset} has not been materialized in {store.root}: run `make demo` first")
    return artifact


def ground_truth(store: ArtifactStore):  # noqa: ANN201 - the ground-truth frame
    """The current ``ground_truth_ranks`` frame."""
    return _required(store, "ground_truth_ranks").load()


def store_evaluation_data(store: ArtifactStore, catalog: DatasetCatalog) -> EvaluationData:
    """The held-out evaluation's inputs, as ``ranker_evaluation`` reads them from the store."""
    embeddings = current_artifacts(store, "model_embeddings")
    models = sorted(embeddings)
    sources = current_artifacts(store, "model_source_tokens")
    return evaluation_data(
        ground_truth(store),
        {m: embeddings[m].load().token for m in models},
        LoadedArtifacts(current_artifacts(store, "dataset_tokens")),
        {e.key: e.family for e in catalog.entries()},
        {d: a.load()["scores"] for d, a in current_artifacts(store, "transferability_scores").items()},
        source_descriptors(sources, models) if sources else None,
    )


def autoencoder_training(store: ArtifactStore) -> AutoEncoderTrainingConfig:
    """The training config of the current autoencoder (to retrain it the same way without some models)."""
    return _required(store, "autoencoder").load().training


def model_parameters(store: ArtifactStore) -> LoadedArtifacts:
    """Every model's flattened parameters, ``{model: ModelParameters}``, each read on first use."""
    return LoadedArtifacts(current_artifacts(store, "model_parameters"))
