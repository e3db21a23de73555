"""Asset ``autoencoder``: the weight-chunk autoencoder trained on chunks of every model."""

import hashlib
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetIn, Config, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached, png_markdown
from assets.model_parameters import load_parameters
from assets.training_outputs import copy_training_outputs
from ml_core.autoencoder import (
    AutoEncoderArtifact,
    AutoEncoderConfig,
    AutoEncoderTrainingConfig,
    state_dict_bytes,
    train_autoencoder,
)
from ml_core.trainer import TrainerConfig
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice

CODE_VERSION = "1"


class AutoEncoderAssetConfig(Config):
    hidden_dim: int = 1024
    code_dim: int = 512
    dropout: float = 0.1
    reconstruction: Literal["smooth_l1", "mse"] = "smooth_l1"
    l1_weight: float = 1e-4
    epochs: int = 15
    lr: float = 1e-3
    batch_size: int = 64
    early_stopping_patience: int = 4
    max_chunks_per_model: int = 512
    val_fraction: float = 0.2
    seed: int = 0

    def training_config(self, input_dim: int, device: str) -> AutoEncoderTrainingConfig:
        return AutoEncoderTrainingConfig(
            model=AutoEncoderConfig(
                input_dim=input_dim,
                hidden_dim=self.hidden_dim,
                code_dim=self.code_dim,
                dropout=self.dropout,
                reconstruction=self.reconstruction,
                l1_weight=self.l1_weight,
            ),
            trainer=TrainerConfig(
                epochs=self.epochs,
                lr=self.lr,
                early_stopping_patience=self.early_stopping_patience,
                seed=self.seed,
                device=device,
            ),
            batch_size=self.batch_size,
            max_chunks_per_model=self.max_chunks_per_model,
            val_fraction=self.val_fraction,
            seed=self.seed,
        )


@asset(
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="models",
    kinds={"pytorch", "safetensors"},
    ins={"model_parameters": AssetIn(metadata={"all_partitions": True})},
    check_specs=[AssetCheckSpec("reconstruction_beats_mean", asset="autoencoder")],
    description="AutoEncoder 8192 -> 1024 -> 512 trained on weight chunks of all models (split by model).",
)
def autoencoder(
    context: AssetExecutionContext,
    config: AutoEncoderAssetConfig,
    store: ArtifactStore,
    compute: ComputeDevice,
    model_parameters: dict[str, ArtifactRef],
):
    if not model_parameters:
        raise ValueError("autoencoder: no model_parameters partition is materialized yet")
    inputs = {key: ref.content_hash for key, ref in model_parameters.items()}

    def build(directory: UPath) -> tuple[str, dict]:
        params = {key: load_parameters(ref, store) for key, ref in model_parameters.items()}
        chunk_size = next(iter(params.values())).index.chunk_size
        training = config.training_config(chunk_size, compute.torch_device())
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

    result = materialize_cached(
        store,
        asset="autoencoder",
        partition=None,
        code_version=CODE_VERSION,
        config=config.model_dump(),
        inputs=inputs,
        build=build,
        log=context.log,
    )
    s = result.summary
    directory = result.ref.directory(store)
    metadata = {
        **result.base_metadata(),
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
        metadata["loss_plot"] = png_markdown(directory / "loss_curves.png", "autoencoder loss")
    yield Output(result.ref, data_version=result.data_version, metadata=metadata)
    yield AssetCheckResult(
        check_name="reconstruction_beats_mean",
        passed=bool(s["relative_mse"] < 1.0),
        metadata={"relative_mse": s["relative_mse"], "eval_split": s["eval_split"]},
        description="reconstruction error below the variance of the (normalised) weights on held-out models",
    )


def load_autoencoder(ref: ArtifactRef, store: ArtifactStore) -> AutoEncoderArtifact:
    return AutoEncoderArtifact.load(ref.directory(store))
