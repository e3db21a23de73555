"""Which model embeddings are missing or stale, read from the artifact store's manifests.

An embedding is stale when it was built from another autoencoder (retrained) or from other
model parameters (replaced checkpoint) than the current ones. The comparison uses the content
hashes recorded in the embedding's manifest, so it is exact and needs no Dagster event query.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from assets.artifacts import current_ref
from resources.artifact_store import ArtifactStore


@dataclass(frozen=True)
class StaleModel:
    key: str
    reason: str  # "missing", "autoencoder retrained", "parameters changed", "parameters missing"
    autoencoder_hash: str


def stale_model_embeddings(store: ArtifactStore, model_keys: Iterable[str]) -> list[StaleModel]:
    """Model partitions whose embedding is missing or not built from the current inputs."""
    autoencoder = current_ref(store, "autoencoder", None)
    if autoencoder is None:
        return []  # nothing can be embedded before an autoencoder exists
    stale = []
    for key in sorted(model_keys):
        embedding = current_ref(store, "model_embeddings", key)
        params = current_ref(store, "model_parameters", key)
        if embedding is None:
            reason = "missing"
        else:
            manifest = store.lookup("model_embeddings", key, embedding.cache_key) or {}
            inputs = manifest.get("inputs", {})
            if inputs.get("autoencoder") != autoencoder.content_hash:
                reason = "autoencoder retrained"
            elif params is None:
                reason = "parameters missing"
            elif inputs.get("model_parameters") != params.content_hash:
                reason = "parameters changed"
            else:
                continue
        stale.append(StaleModel(key, reason, autoencoder.content_hash))
    return stale
