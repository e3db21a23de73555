"""``AutoEncoder`` 8192 -> 1024 -> 512 over weight chunks, its normalisation, and its training.

The encoder is ``Linear(8192, 1024) -> GELU -> Dropout -> Linear(1024, 512)`` (a linear code);
the decoder mirrors it. The loss is a reconstruction term (smooth-L1 or MSE) over the *real*
values of each chunk (the zero padding of a model's last chunk is masked out) plus an L1
penalty on the code. Inputs are standardised by a :class:`ChunkNormalizer` (one mean and one
standard deviation over the real values of the *training* chunks only) stored with the weights.

Chunks are split into train / validation by *model* (a validation model's chunks are never
seen in training), so the validation reconstruction error says how the encoder does on new
models.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core.artifacts import as_upath, read_json, write_json
from ml_core.configs import config_from_dict, config_to_dict
from ml_core.trainer import BaseTrainer, TrainerConfig, TrainingHistory, load_weights, save_weights
from ml_core.weights.parameters import ModelParameters

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "autoencoder.safetensors"
CONFIG_FILE = "autoencoder.json"


@dataclass(frozen=True)
class AutoEncoderConfig:
    """What builds an :class:`AutoEncoder`; saved beside its weights."""

    input_dim: int = 8192  # the chunk size of the weights it encodes
    hidden_dim: int = 1024
    code_dim: int = 512
    dropout: float = 0.1
    reconstruction: Literal["smooth_l1", "mse"] = "smooth_l1"
    smooth_l1_beta: float = 1.0
    l1_weight: float = 1e-4


class AutoEncoder(nn.Module):
    """Weight-chunk autoencoder; ``forward(x (B, input_dim)) -> (recon (B, input_dim), code (B, code_dim))``."""

    def __init__(self, config: AutoEncoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = nn.Sequential(
            nn.Linear(c.input_dim, c.hidden_dim), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(c.hidden_dim, c.code_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(c.code_dim, c.hidden_dim), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(c.hidden_dim, c.input_dim)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, input_dim)`` normalised chunks -> ``(B, code_dim)`` codes."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x)
        return self.decoder(code), code


@dataclass
class ChunkNormalizer:
    """Scalar standardisation of weight values: ``(x - mean) / std``; padding stays 0."""

    mean: float
    std: float

    @classmethod
    def fit(cls, chunks: np.ndarray, mask: np.ndarray) -> ChunkNormalizer:
        values = chunks[mask].astype(np.float64)
        std = float(values.std()) if values.size else 1.0
        return cls(mean=float(values.mean()) if values.size else 0.0, std=std if std > 1e-12 else 1.0)

    def apply(self, chunks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, (chunks - self.mean) / self.std, torch.zeros((), dtype=chunks.dtype))


def reconstruction_loss(
    recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, config: AutoEncoderConfig
) -> torch.Tensor:
    """Mean reconstruction error over real (mask True) values only."""
    if config.reconstruction == "mse":
        err = (recon - target) ** 2
    else:
        err = nn.functional.smooth_l1_loss(recon, target, reduction="none", beta=config.smooth_l1_beta)
    maskf = mask.to(err.dtype)
    return (err * maskf).sum() / maskf.sum().clamp_min(1.0)


class AutoEncoderTrainer(BaseTrainer):
    """Batches are ``(normalised chunks (B, D), mask (B, D))``."""

    model: AutoEncoder

    def compute_loss(self, batch: Any) -> torch.Tensor:
        x, mask = batch
        recon, code = self.model(x)
        rec = reconstruction_loss(recon, x, mask, self.model.config)
        l1 = code.abs().mean()
        self._last_batch_metrics = {"reconstruction": float(rec.item()), "code_l1": float(l1.item())}
        return rec + self.model.config.l1_weight * l1


@dataclass(frozen=True)
class AutoEncoderTrainingConfig:
    """How an autoencoder is trained: the config of the model it builds, the loop, the chunk sample.

    ``model.input_dim`` must be the chunks' size (8192 by default). The whole config is saved with the
    trained artifact, so an autoencoder can be retrained the same way (e.g. without some models).
    """

    model: AutoEncoderConfig = field(default_factory=AutoEncoderConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=15, lr=1e-3, early_stopping_patience=4))
    batch_size: int = 64
    max_chunks_per_model: int = 512
    val_fraction: float = 0.2
    seed: int = 0


@dataclass
class AutoEncoderArtifact:
    """A trained autoencoder with everything needed to use it."""

    model: AutoEncoder
    normalizer: ChunkNormalizer
    info: dict[str, Any]
    training: AutoEncoderTrainingConfig = field(default_factory=AutoEncoderTrainingConfig)

    def encode_chunks(self, chunks: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Raw chunks ``(B, D)`` + real-value mask -> codes ``(B, code_dim)`` float32."""
        self.model.eval()
        with torch.inference_mode():
            x = self.normalizer.apply(torch.from_numpy(np.asarray(chunks, dtype=np.float32)), torch.from_numpy(mask))
            return self.model.encode(x).numpy().astype(np.float32)

    def save(self, directory: Any) -> None:
        """Write ``autoencoder.safetensors`` and ``autoencoder.json`` (any fsspec path)."""
        directory = as_upath(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(self.model, directory / WEIGHTS_FILE)
        write_json(
            directory / CONFIG_FILE,
            {
                "model": asdict(self.model.config),
                "training": config_to_dict(self.training),
                "normalizer": asdict(self.normalizer),
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, directory: Any) -> AutoEncoderArtifact:
        directory = as_upath(directory)
        meta = read_json(directory / CONFIG_FILE)
        model = AutoEncoder(AutoEncoderConfig(**meta["model"]))
        load_weights(model, directory / WEIGHTS_FILE)
        training = config_from_dict(AutoEncoderTrainingConfig, meta["training"]) if "training" in meta else None
        return cls(model=model, normalizer=ChunkNormalizer(**meta["normalizer"]), info=meta.get("info", {}),
                   training=training or AutoEncoderTrainingConfig(model=model.config))


def sample_chunks(
    params: ModelParameters, max_chunks: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_chunks`` rows of one model (random subset, sorted) and their real-value masks."""
    n = params.n_chunks
    rows = np.arange(n) if n <= max_chunks else np.sort(rng.choice(n, size=max_chunks, replace=False))
    chunks = np.asarray(params.chunks.get_orthogonal_selection((rows, slice(None))), dtype=np.float32)
    return chunks, params.valid_mask(rows)


def split_models(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Train / validation split of model names (validation empty when fewer than 2 models)."""
    names = sorted(names)
    if len(names) < 2 or val_fraction <= 0:
        return names, []
    rng = np.random.default_rng(seed)
    n_val = min(max(1, round(val_fraction * len(names))), len(names) - 1)
    val = sorted(rng.choice(names, size=n_val, replace=False).tolist())
    return [n for n in names if n not in val], val


def _stack(
    models: dict[str, ModelParameters], names: list[str], config: AutoEncoderTrainingConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    parts = [sample_chunks(models[n], config.max_chunks_per_model, rng) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def train_autoencoder(
    models: dict[str, ModelParameters], config: AutoEncoderTrainingConfig, out_dir: Path | None = None
) -> tuple[AutoEncoderArtifact, TrainingHistory]:
    """Train on chunks of every model (sampled, split by model); returns the artifact and history."""
    if not models:
        raise ValueError("no models to train the autoencoder on")
    chunk_sizes = {p.index.chunk_size for p in models.values()}
    if chunk_sizes != {config.model.input_dim}:
        raise ValueError(f"chunk sizes {sorted(chunk_sizes)} do not match the autoencoder input {config.model.input_dim}")
    rng = np.random.default_rng(config.seed)
    train_names, val_names = split_models(list(models), config.val_fraction, config.seed)
    x_train, m_train = _stack(models, train_names, config, rng)
    normalizer = ChunkNormalizer.fit(x_train, m_train)

    def loader(x: np.ndarray, m: np.ndarray, shuffle: bool) -> DataLoader:
        xt = normalizer.apply(torch.from_numpy(x), torch.from_numpy(m))
        gen = torch.Generator().manual_seed(config.seed)
        return DataLoader(TensorDataset(xt, torch.from_numpy(m)), batch_size=config.batch_size, shuffle=shuffle, generator=gen)

    torch.manual_seed(config.seed)
    model = AutoEncoder(config.model)
    train_loader = loader(x_train, m_train, True)
    val_loader = None
    if val_names:
        x_val, m_val = _stack(models, val_names, config, rng)
        val_loader = loader(x_val, m_val, False)
    history = AutoEncoderTrainer(model, config.trainer, out_dir).fit(train_loader, val_loader)
    model.eval()
    eval_loader = val_loader or loader(x_train, m_train, False)
    info = {
        "train_models": train_names,
        "val_models": val_names,
        "n_train_chunks": int(len(x_train)),
        **evaluate_reconstruction(model, eval_loader, "val" if val_names else "train"),
    }
    return AutoEncoderArtifact(model=model, normalizer=normalizer, info=info, training=config), history


def evaluate_reconstruction(model: AutoEncoder, loader: DataLoader, split: str) -> dict[str, float]:
    """Reconstruction MSE on normalised values and its ratio to the values' variance.

    ``relative_mse`` < 1 means the code carries information (1 = predicting the mean).
    """
    se, var_sum, count, total = 0.0, 0.0, 0.0, 0.0
    model.eval()
    with torch.no_grad():
        for x, mask in loader:
            recon, _ = model(x)
            maskf = mask.float()
            se += float((((recon - x) ** 2) * maskf).sum())
            total += float((x * maskf).sum())
            var_sum += float(((x**2) * maskf).sum())
            count += float(maskf.sum())
    return {"eval_split": split, **relative_error(se, total, var_sum, count)}


def relative_error(squared_error: float, total: float, squares: float, count: float) -> dict[str, float]:
    """``reconstruction_mse`` and ``relative_mse`` (the MSE over the targets' variance: 1 = predicting
    their mean) from sums over ``count`` real values: squared errors, targets and squared targets."""
    n = max(count, 1.0)
    variance = squares / n - (total / n) ** 2
    mse = squared_error / n
    return {"reconstruction_mse": mse, "relative_mse": mse / variance if variance > 0 else float("nan")}
