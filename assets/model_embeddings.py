"""Asset ``model_embeddings``: every chunk of one model encoded and pooled into its tokens."""

import numpy as np
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, Config, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached
from assets.autoencoder import load_autoencoder
from assets.model_parameters import load_parameters
from assets.partitions import models_partitions
from ml_core.embeddings import ModelEmbedding, embed_model
from resources.artifact_store import ArtifactStore

CODE_VERSION = "1"


class EmbeddingConfig(Config):
    batch_rows: int = 256
    n_segments: int = 8


@asset(
    partitions_def=models_partitions,
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="models",
    kinds={"pytorch", "numpy"},
    check_specs=[AssetCheckSpec("finite_embedding", asset="model_embeddings")],
    description="The 512-d code of each chunk, pooled (valid-length-weighted mean) into the model's token.",
)
def model_embeddings(
    context: AssetExecutionContext,
    config: EmbeddingConfig,
    store: ArtifactStore,
    model_parameters: ArtifactRef,
    autoencoder: ArtifactRef,
):
    def build(directory: UPath) -> tuple[str, dict]:
        params = load_parameters(model_parameters, store)
        embedding = embed_model(
            params, load_autoencoder(autoencoder, store), batch_rows=config.batch_rows, n_segments=config.n_segments
        )
        embedding.save(directory)
        return embedding.content_hash(), {
            "n_chunks": int(embedding.codes.shape[0]),
            "code_dim": int(embedding.codes.shape[1]),
            "n_segments": int(embedding.segment_tokens.shape[0]),
            "token_norm": float(np.linalg.norm(embedding.token)),
            "finite": bool(np.isfinite(embedding.codes).all()),
        }

    result = materialize_cached(
        store,
        asset="model_embeddings",
        partition=context.partition_key,
        code_version=CODE_VERSION,
        config=config.model_dump(),
        inputs={"model_parameters": model_parameters.content_hash, "autoencoder": autoencoder.content_hash},
        build=build,
        log=context.log,
    )
    s = result.summary
    yield Output(
        result.ref,
        data_version=result.data_version,
        metadata={
            **result.base_metadata(),
            "codes_shape": f"({s['n_chunks']}, {s['code_dim']})",
            "token_dim": s["code_dim"],
            "token_norm": s["token_norm"],
            "pooling": "valid-length-weighted mean of chunk codes",
        },
    )
    yield AssetCheckResult(check_name="finite_embedding", passed=bool(s["finite"]))


def load_embedding(ref: ArtifactRef, store: ArtifactStore) -> ModelEmbedding:
    return ModelEmbedding.load(ref.directory(store))
