"""Asset ``model_embeddings``: every piece of one model (token windows or chunks) encoded and pooled into its tokens."""

import numpy as np
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, asset
from upath import UPath

from assets.shared.artifacts import Artifact, materialize_asset
from assets.shared.configs import dagster_config
from assets.shared.partitions import models_partitions
from ml_core.weights import EmbeddingConfig, embed
from resources.artifact_store import ArtifactStore

CODE_VERSION = "2"  # 2: token-encoder windows; the token appends depth segments and the layout summary
EmbeddingAssetConfig = dagster_config(EmbeddingConfig(), "EmbeddingAssetConfig")


@asset(
    partitions_def=models_partitions,
    code_version=CODE_VERSION,
    group_name="models",
    kinds={"pytorch", "numpy"},
    check_specs=[AssetCheckSpec("finite_embedding", asset="model_embeddings")],
    description="The code of every piece of the model (weight-token windows, or 8192-value chunks for the chunk "
    "autoencoder), pooled (real-value-weighted mean, overall and per depth segment) into the model's token.",
)
def model_embeddings(
    context: AssetExecutionContext,
    config: EmbeddingAssetConfig,
    store: ArtifactStore,
    model_parameters: Artifact,
    autoencoder: Artifact,
):
    embedding_config = config.to_ml()

    def build(directory: UPath) -> tuple[str, dict]:
        embedding = embed(model_parameters.load(), autoencoder.load(), embedding_config)
        embedding.save(directory)
        return embedding.content_hash(), {
            "n_chunks": int(embedding.codes.shape[0]),
            "code_dim": int(embedding.codes.shape[1]),
            "token_dim": int(embedding.token.shape[0]),
            "n_segments": int(embedding.segment_tokens.shape[0]),
            "token_norm": float(np.linalg.norm(embedding.token)),
            "finite": bool(np.isfinite(embedding.codes).all()),
        }

    result = materialize_asset(
        context, store, config=config.model_dump(),
        inputs={"model_parameters": model_parameters.content_hash, "autoencoder": autoencoder.content_hash},
        build=build,
    )
    s = result.summary
    yield result.output({
        "codes_shape": f"({s['n_chunks']}, {s['code_dim']})",
        "token_dim": s["token_dim"],
        "token_norm": round(s["token_norm"], 4),
        "pooling": f"real-value-weighted mean of the piece codes, then of {embedding_config.token_segments} "
                   "contiguous depth segments" + (", then the tokens' mean position features (layout; token "
                   "encoder only)" if embedding_config.structure else "") + ", concatenated",
    })
    yield AssetCheckResult(check_name="finite_embedding", passed=bool(s["finite"]))
