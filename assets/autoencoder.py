"""Asset ``autoencoder``: the weight embedder trained on the weights of every model (split by model).

The asset keeps the seed's name. What it trains is ``config.method``: the ``token_encoder`` (default;
a transformer over windows of weight tokens, masked reconstruction + contrastive views) or the seed's
``chunk_autoencoder`` (8192 -> 1024 -> 512 over the flattened chunks), kept as the baseline. Its check
``reconstruction_beats_mean`` scores models the embedder never trained on; whether its embeddings mean
anything is the check of ``embedding_probes``, which reads the ground truth this asset must not depend on.
"""

import hashlib
import tempfile
from dataclasses import asdict
from pathlib import Path

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, asset
from upath import UPath

from assets.shared.artifacts import Artifact, all_partitions, content_hashes, materialize_asset, png_markdown
from assets.shared.configs import dagster_config
from assets.shared.loaders import copy_training_outputs
from ml_core.configs import replace_nested
from ml_core.trainer import state_dict_bytes
from ml_core.weights import AutoEncoderArtifact, WeightEmbedderConfig, train_embedder
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice

CODE_VERSION = "3"  # 3: the embedder is chosen by config (token encoder by default); held-out check
# the chunk size comes from the models' chunks; the device from the compute resource
AutoEncoderAssetConfig = dagster_config(
    WeightEmbedderConfig(), "AutoEncoderAssetConfig",
    exclude={"chunks.model.input_dim", "chunks.trainer.device", "tokens.trainer.device"},
)


@asset(
    code_version=CODE_VERSION,
    group_name="models",
    kinds={"pytorch", "safetensors"},
    ins={"model_parameters": all_partitions()},
    check_specs=[AssetCheckSpec("reconstruction_beats_mean", asset="autoencoder")],
    description="The weight embedder: a transformer over windows of weight tokens (rows of tensors) trained "
    "with masked reconstruction and contrastive views (config method=token_encoder, default), or the seed's "
    "chunk AutoEncoder 8192 -> 1024 -> 512 (method=chunk_autoencoder); split by model.",
)
def autoencoder(
    context: AssetExecutionContext,
    config: AutoEncoderAssetConfig,
    store: ArtifactStore,
    compute: ComputeDevice,
    model_parameters: dict[str, Artifact],
):
    if not model_parameters:
        raise ValueError("autoencoder: no model_parameters partition is materialized yet")

    def build(directory: UPath) -> tuple[str, dict]:
        params = {key: artifact.load() for key, artifact in model_parameters.items()}
        chunk_size = next(iter(params.values())).index.chunk_size
        device = compute.torch_device()
        training = replace_nested(config.to_ml(), {"chunks": {"model": {"input_dim": chunk_size}, "trainer": {"device": device}},
                                                   "tokens": {"trainer": {"device": device}}})
        with tempfile.TemporaryDirectory() as local:
            artifact, history = train_embedder(params, training, Path(local))
            artifact.model.cpu()
            artifact.save(directory)
            files = copy_training_outputs(Path(local), directory)
        digest = hashlib.sha256(state_dict_bytes(artifact.model))
        if isinstance(artifact, AutoEncoderArtifact):
            digest.update(repr(asdict(artifact.normalizer)).encode())
        last = history.epochs[-1]
        return digest.hexdigest(), {
            **artifact.info,
            "method": training.method,
            "n_models": len(params),
            "epochs_run": len(history.epochs),
            "best_epoch": history.best_epoch,
            "final_train_loss": last["train_loss"],
            "final_val_loss": last.get("val_loss"),
            "files": files,
        }

    result = materialize_asset(
        context, store, config=config.model_dump(), inputs=content_hashes(model_parameters, "params"), build=build
    )
    s = result.summary
    metadata = {
        "method": s["method"],
        "n_models": s["n_models"],
        "train_models": ", ".join(s["train_models"]),
        "val_models": ", ".join(s["val_models"]),
        "epochs_run": s["epochs_run"],
        "final_train_loss": round(s["final_train_loss"], 4),
        "reconstruction_mse": round(s["reconstruction_mse"], 4),
        "relative_mse": round(s["relative_mse"], 4),
        "eval_split": s["eval_split"],
    }
    for key in ("n_train_tokens", "n_train_chunks"):
        if key in s:
            metadata[key] = s[key]
    if "loss_curves.png" in s["files"]:
        metadata["loss_plot"] = png_markdown(result.ref.directory(store) / "loss_curves.png", "autoencoder loss")
    yield result.output(metadata)
    held_out = s["eval_split"] == "val"
    yield AssetCheckResult(
        check_name="reconstruction_beats_mean",
        passed=bool(held_out and s["relative_mse"] < 1.0),
        metadata={"relative_mse": s["relative_mse"], "eval_split": s["eval_split"], "val_models": len(s["val_models"])},
        description="on models the embedder never trained on (the validation models), the reconstruction error "
        "is below the variance of the weights it reconstructs (relative MSE < 1: better than their mean)",
    )
