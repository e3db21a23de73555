"""``AutoEncoder`` 8192 -> 1024 -> 512 over weight chunks, its normalisation, and its training.

The encoder is ``Linear(8192, 1024) -> GELU -> Dropout -> Linear(1024, 512)`` (a linear code);
the decoder mirrors it. The loss is a reconstruction term (smooth-L1 or MSE) over the *real*
values of each chunk (the zero padding of a model's last chunk is masked out) plus an L1
penalty on the code. Inputs are standardised by a :class:`ChunkNormalizer` (one mean and one
standard deviation over the real values of the *training* chunks only) stored with the weights.

Chunks are split into train / validation by *model* (a validation model's chunks are never
seen in training), so the validation reconstruction error says how the encoder does on new
models.

Memory does not grow with the zoo: training reads a bounded sample of chunks, at most
``max_total_chunks`` in all (train and validation together) and ``max_chunks_per_model`` per model
(:func:`chunk_quotas`), each model's sampled rows read straight from its zarr array
(:func:`sample_chunks`) into one preallocated array. Below the budget every model gives
``min(n_chunks, max_chunks_per_model)`` chunks, as the seed did; past it every model's share is cut
to the same level, and every model still gives at least one chunk while the budget has one per model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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
#: up to this many real values the normaliser is fitted by numpy in one go (exact as the seed); past
#: it, in blocks (bounded memory)
EXACT_FIT_VALUES = 2**24


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
        """Mean and standard deviation of the real values (float64). Up to :data:`EXACT_FIT_VALUES`
        real values, numpy's over all of them at once; past that, two passes over blocks of rows, so
        the memory is one block (not 20 bytes per value): equal to ~1e-15 relative."""
        if int(np.count_nonzero(mask)) > EXACT_FIT_VALUES:
            return cls._fit_blocks(chunks, mask)
        values = chunks[mask].astype(np.float64)
        std = float(values.std()) if values.size else 1.0
        return cls(mean=float(values.mean()) if values.size else 0.0, std=std if std > 1e-12 else 1.0)

    @classmethod
    def _fit_blocks(cls, chunks: np.ndarray, mask: np.ndarray, block_rows: int = 256) -> ChunkNormalizer:
        def blocks():
            for start in range(0, len(chunks), block_rows):
                yield chunks[start : start + block_rows][mask[start : start + block_rows]].astype(np.float64)

        total, count = 0.0, 0
        for values in blocks():
            total += float(values.sum())
            count += values.size
        mean = total / count
        squares = sum(float(((values - mean) ** 2).sum()) for values in blocks())
        std = float(np.sqrt(squares / count))
        return cls(mean=mean, std=std if std > 1e-12 else 1.0)

    def apply(self, chunks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, (chunks - self.mean) / self.std, torch.zeros((), dtype=chunks.dtype))

    def apply_(self, chunks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`apply` in place (the same values, no second copy of a large sample); returns ``chunks``."""
        return chunks.sub_(self.mean).div_(self.std).masked_fill_(~mask, 0.0)


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
    Training holds at most ``max_total_chunks`` chunks (train and validation together; 16384 chunks
    of 8192 float32 = 512 MiB), at most ``max_chunks_per_model`` of each model: see :func:`chunk_quotas`.
    """

    model: AutoEncoderConfig = field(default_factory=AutoEncoderConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=15, lr=1e-3, early_stopping_patience=4))
    batch_size: int = 64
    max_chunks_per_model: int = 512
    max_total_chunks: int = 16384
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
    """Up to ``max_chunks`` rows of one model (random subset, sorted) and their real-value masks;
    only those rows are read from the (lazy) zarr array."""
    n = params.n_chunks
    rows = np.arange(n) if n <= max_chunks else np.sort(rng.choice(n, size=max_chunks, replace=False))
    chunks = np.asarray(params.chunks.get_orthogonal_selection((rows, slice(None))), dtype=np.float32)
    return chunks, params.valid_mask(rows)


def chunk_quotas(
    counts: Mapping[str, int], budget: int, max_per_model: int, rng: np.random.Generator
) -> dict[str, int]:
    """How many chunks to sample from each model, ``counts`` giving each model's chunk count.

    Each model gives ``min(n_chunks, max_per_model, level)``, ``level`` the highest that keeps the
    sum within ``budget`` (no level: every model's ``min(n_chunks, max_per_model)``; with ``n`` models
    whose chunks all reach it, ``level`` is ``budget // n``). With more models than ``budget``, a
    random subset (``rng``) of ``budget`` models gives one chunk each and the others none. The sum
    never exceeds ``budget``; ``rng`` is used only in that last case.
    """
    if budget < 0 or max_per_model < 1:
        raise ValueError(f"chunk budget {budget} and per-model cap {max_per_model}: need >= 0 and >= 1")
    capped = {name: min(int(n), max_per_model) for name, n in counts.items()}
    if sum(capped.values()) <= budget:
        return capped
    if len(capped) > budget:
        chosen = set(rng.choice(sorted(capped), size=budget, replace=False).tolist())
        return {name: int(name in chosen) for name in capped}
    low, high = 1, max(capped.values())  # level 1 fits: one chunk per model, len(capped) <= budget
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in capped.values()) <= budget:
            low = mid
        else:
            high = mid - 1
    return {name: min(n, low) for name, n in capped.items()}


def split_budget(budget: int, n_train: int, n_val: int) -> tuple[int, int]:
    """The chunk budget split between training and validation models in proportion to their
    number (at least one chunk for training); each side gets one chunk per model while the budget allows."""
    if n_val == 0:
        return budget, 0
    train = max(1, budget * n_train // (n_train + n_val))
    return train, max(budget - train, 0)


def split_models(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Train / validation split of model names (validation empty when fewer than 2 models)."""
    names = sorted(names)
    if len(names) < 2 or val_fraction <= 0:
        return names, []
    rng = np.random.default_rng(seed)
    n_val = min(max(1, round(val_fraction * len(names))), len(names) - 1)
    val = sorted(rng.choice(names, size=n_val, replace=False).tolist())
    return [n for n in names if n not in val], val


#: Extra weights per model, e.g. the intermediate checkpoints of the run that trained it: ``{model: [params]}``.
Corpus = Mapping[str, Sequence[ModelParameters]]


def with_corpus(models: Mapping[str, ModelParameters], names: list[str], corpus: Corpus | None
                ) -> tuple[dict[str, ModelParameters], list[str], list[str]]:
    """The named models plus the corpus weights of each of them, their keys, and the model each key's
    weights belong to (the run): a model's corpus goes wherever the model goes, so weights of one run
    never sit on both sides of a train / validation split or of a held-out fold. A corpus key is
    ``<model>\x00<i>``, which no file-named model can have."""
    out = {n: models[n] for n in names}
    runs = list(names)
    for name in names:
        for i, extra in enumerate((corpus or {}).get(name, ())):
            out[f"{name}\x00{i}"] = extra
            runs.append(name)
    return out, list(out), runs


def _stack(
    models: dict[str, ModelParameters], quotas: dict[str, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each model's quota of sampled chunks, in the order of ``quotas``, read into one preallocated
    array (memory: the sample plus one model's share, never every sample twice)."""
    total = sum(quotas.values())
    width = next(iter(models.values())).index.chunk_size
    chunks, mask = np.empty((total, width), np.float32), np.empty((total, width), bool)
    row = 0
    for name, quota in quotas.items():
        if quota <= 0:
            continue
        part, part_mask = sample_chunks(models[name], quota, rng)
        chunks[row : row + len(part)], mask[row : row + len(part)] = part, part_mask
        row += len(part)
    return chunks[:row], mask[:row]


def train_autoencoder(
    models: dict[str, ModelParameters], config: AutoEncoderTrainingConfig, out_dir: Path | None = None,
    corpus: Corpus | None = None,
) -> tuple[AutoEncoderArtifact, TrainingHistory]:
    """Train on a bounded sample of chunks of every model (split by model; see :func:`chunk_quotas`);
    returns the artifact and history. ``corpus``: extra training weights of the models on the training
    side of the split (:func:`with_corpus`); validation reads the held-out models alone."""
    if not models:
        raise ValueError("no models to train the autoencoder on")
    if config.max_total_chunks < 1:
        raise ValueError(f"max_total_chunks must be >= 1, got {config.max_total_chunks}")
    chunk_sizes = {p.index.chunk_size for p in models.values()}
    if chunk_sizes != {config.model.input_dim}:
        raise ValueError(f"chunk sizes {sorted(chunk_sizes)} do not match the autoencoder input {config.model.input_dim}")
    rng = np.random.default_rng(config.seed)
    train_names, val_names = split_models(list(models), config.val_fraction, config.seed)
    model_names = train_names
    train_models, train_names, _ = with_corpus(models, train_names, corpus)
    models = {**models, **train_models}
    train_budget, val_budget = split_budget(config.max_total_chunks, len(train_names), len(val_names))
    train_quotas = chunk_quotas({n: models[n].n_chunks for n in train_names}, train_budget,
                                config.max_chunks_per_model, rng)
    val_quotas = chunk_quotas({n: models[n].n_chunks for n in val_names}, val_budget,
                              config.max_chunks_per_model, rng)
    x_train, m_train = _stack(models, train_quotas, rng)
    normalizer = ChunkNormalizer.fit(x_train, m_train)

    def loader(x: np.ndarray, m: np.ndarray, shuffle: bool) -> DataLoader:
        xt = normalizer.apply_(torch.from_numpy(x), torch.from_numpy(m))  # in place: x is normalised
        gen = torch.Generator().manual_seed(config.seed)
        return DataLoader(TensorDataset(xt, torch.from_numpy(m)), batch_size=config.batch_size, shuffle=shuffle, generator=gen)

    torch.manual_seed(config.seed)
    model = AutoEncoder(config.model)
    train_loader = loader(x_train, m_train, True)
    val_loader = None
    n_val_chunks = 0
    if sum(val_quotas.values()):
        x_val, m_val = _stack(models, val_quotas, rng)
        n_val_chunks = len(x_val)
        val_loader = loader(x_val, m_val, False)
    history = AutoEncoderTrainer(model, config.trainer, out_dir).fit(train_loader, val_loader)
    model.eval()
    eval_loader = val_loader or DataLoader(train_loader.dataset, batch_size=config.batch_size, shuffle=False)
    info = {
        "train_models": model_names,
        "val_models": val_names,
        "n_corpus_models": len(train_names) - len(model_names),
        "n_train_chunks": int(len(x_train)),
        "n_val_chunks": int(n_val_chunks),
        **evaluate_reconstruction(model, eval_loader, "val" if val_loader is not None else "train"),
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
