"""Asset ``autoencoder``: the weight-chunk autoencoder trained on chunks of every model."""

import hashlib
import tempfile
from dataclasses import asdict
from pathlib import Path

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, asset
from upath import UPath

from assets.artifacts import Artifact, all_partitions, content_hashes, materialize_asset, png_markdown
from assets.configs import dagster_config
from assets.loaders import copy_training_outputs
from ml_core.configs import replace_nested
from ml_core.trainer import state_dict_bytes
from ml_core.weights import AutoEncoderTrainingConfig, train_autoencoder
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice

CODE_VERSION = "2"  # 2: the training config (with the model's) saved in the artifact
# the chunk size comes from the models' chunks; the device from the compute resource
AutoEncoderAssetConfig = dagster_config(
    AutoEncoderTrainingConfig(), "AutoEncoderAssetConfig", exclude={"model.input_dim", "trainer.device"}
)


@asset(
    code_version=CODE_VERSION,
    group_name="models",
    kinds={"pytorch", "safetensors"},
    ins={"model_parameters": all_partitions()},
    check_specs=[AssetCheckSpec("reconstruction_beats_mean", asset="autoencoder")],
    description="AutoEncoder 8192 -> 1024 -> 512 trained on weight chunks of all models (split by model).",
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
        training = replace_nested(config.to_ml(), {"model": {"input_dim": chunk_size},
                                                   "trainer": {"device": compute.torch_device()}})
        with tempfile.TemporaryDirectory() as local:
            artifact, history = train_autoencoder(params, training, Path(local))
            artifact.model.cpu()
            artifact.save(directory)
            files = copy_training_outputs(Path(local), directory)
        weights = state_dict_bytes(artifact.model)
        content_hash = hashlib.sha256(weights + repr(asdict(artifact.normalizer)).encode()).hexdigest()
        last = history.epochs[-1]
        return content_hash, {
            **artifact.info,
            "n_models": len(params),
            "epochs_run": len(history.epochs),
            "best_epoch": history.best_epoch,
            "final_train_loss": last["train_loss"],
            "final_val_loss": last.get("val_loss"),
            "normalizer": asdict(artifact.normalizer),
            "files": files,
        }

    result = materialize_asset(
        context, store, config=config.model_dump(), inputs=content_hashes(model_parameters, "params"), build=build
    )
    s = result.summary
    metadata = {
        "n_models": s["n_models"],
        "n_train_chunks": s["n_train_chunks"],
        "train_models": ", ".join(s["train_models"]),
        "val_models": ", ".join(s["val_models"]),
        "epochs_run": s["epochs_run"],
        "final_train_loss": s["final_train_loss"],
        "reconstruction_mse": s["reconstruction_mse"],
        "relative_mse": s["relative_mse"],
        "eval_split": s["eval_split"],
    }
    if "loss_curves.png" in s["files"]:
        metadata["loss_plot"] = png_markdown(result.ref.directory(store) / "loss_curves.png", "autoencoder loss")
    yield result.output(metadata)
    yield AssetCheckResult(
        check_name="reconstruction_beats_mean",
        passed=bool(s["relative_mse"] < 1.0),
        metadata={"relative_mse": s["relative_mse"], "eval_split": s["eval_split"]},
        description="reconstruction error below the variance of the (normalised) weights on held-out models",
    )
