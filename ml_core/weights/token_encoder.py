"""``WeightTokenEncoder``: a transformer over windows of weight tokens, trained by masked reconstruction
and a contrastive loss between views of the same model (a small SANE, Schürholt et al., ICML 2024).

A *window* is ``window`` consecutive weight tokens of one model in network order
(:mod:`~ml_core.weights.weight_tokens`). Each token enters as ``Linear(values) + Linear(positions)``;
a pre-norm transformer encoder mixes the window; the window's code is the masked mean of its hidden
states through ``Linear(d_model, code_dim)``. Two heads train it:

* **reconstruction**: every token's RMS-normalised values are predicted from its hidden state through
  a ``latent_dim`` bottleneck (16 numbers for 64 values), and a fraction of the tokens have their
  values replaced by a learned mask vector first (their positions, scale included, stay visible), so
  those are predicted from their context alone; the loss is the MSE over real values;
* **contrastive (NT-Xent)**: two *views* of a model, windows starting near each other in the same
  model, each with small Gaussian noise, token dropout and a reordering of the weights
  (``permutation``: ``rows`` shuffles a window's tokens within each tensor, their positions with
  them, which the encoder, reading a set of tokens, cannot see; ``neurons`` applies an independent
  random function-preserving neuron permutation to each view, :mod:`~ml_core.weights.permutations`,
  and re-tokenizes the permuted weights), are pulled together through a projection head and pushed
  from the other models' windows in the batch. With a corpus (other checkpoints of a model's own
  training run, :func:`~ml_core.weights.autoencoder.with_corpus`), ``corpus_negatives=False`` leaves
  the windows of the same run out of each other's negatives: they are neither pulled nor pushed.

A model's embedding is the mean of the codes of all its windows (weighted by real tokens), overall
and per contiguous depth segment, so it does not depend on the model's size: see :func:`embed_tokens`.
Training draws windows from a bounded sample of each model's tokens (:func:`sample_model_tokens`:
at most ``max_tokens_per_model`` and ``max_total_tokens`` in all), so memory does not grow with the
zoo. Models are split into train / validation *by model*; the validation models are never trained on.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml_core.artifacts import as_upath, read_json, write_json
from ml_core.configs import config_from_dict, config_to_dict
from ml_core.trainer import BaseTrainer, TrainerConfig, TrainingHistory, load_weights, save_weights
from ml_core.weights.autoencoder import Corpus, relative_error, split_models, with_corpus
from ml_core.weights.parameters import ModelParameters
from ml_core.weights.permutations import TokenPermuter, model_permutation_groups
from ml_core.weights.weight_tokens import N_POSITION_FEATURES, WeightTokens, model_tensor_tokens

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "token_encoder.safetensors"
CONFIG_FILE = "token_encoder.json"


@dataclass(frozen=True)
class TokenEncoderConfig:
    """What builds a :class:`WeightTokenEncoder`; saved beside its weights."""

    token_size: int = 64
    window: int = 32
    d_model: int = 96
    n_layers: int = 2
    n_heads: int = 4
    ff_dim: int = 192
    dropout: float = 0.1
    code_dim: int = 64
    latent_dim: int = 16  # the per-token bottleneck the values are reconstructed through


class WeightTokenEncoder(nn.Module):
    """Windows of weight tokens -> per-window codes, with the two training heads.

    ``forward(values (B, W, S), positions (B, W, P), present (B, W) bool, hidden (B, W) bool)`` returns
    ``code (B, code_dim)`` and ``recon (B, W, S)`` (the predicted values of every token, through the
    per-token bottleneck). ``present`` marks real tokens (False on a window's padding); ``hidden``
    the tokens whose values the encoder does not see.
    """

    def __init__(self, config: TokenEncoderConfig):
        super().__init__()
        self.config = c = config
        self.value_proj = nn.Linear(c.token_size, c.d_model)
        self.position_proj = nn.Linear(N_POSITION_FEATURES, c.d_model)
        self.mask_embedding = nn.Parameter(torch.zeros(c.d_model))
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.ff_dim, c.dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.code_head = nn.Linear(c.d_model, c.code_dim)
        self.recon_head = nn.Sequential(nn.Linear(c.d_model, c.latent_dim), nn.Linear(c.latent_dim, c.token_size))
        self.projection = nn.Sequential(nn.Linear(c.code_dim, c.code_dim), nn.GELU(), nn.Linear(c.code_dim, c.code_dim))

    def forward(
        self, values: torch.Tensor, positions: torch.Tensor, present: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.value_proj(values)
        if hidden is not None:
            x = torch.where(hidden[..., None], self.mask_embedding.expand_as(x), x)
        x = self.norm(self.transformer(x + self.position_proj(positions), src_key_padding_mask=~present))
        weights = present.to(x.dtype)[..., None]
        pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.code_head(pooled), self.recon_head(x)

    def encode(self, values: torch.Tensor, positions: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``(B, W, S), (B, W, P), (B, W)`` -> ``(B, code_dim)`` window codes (no masking)."""
        return self.forward(values, positions, present)[0]


#: How a view reorders a model's weights: ``rows`` shuffles a window's tokens among those of the same
#: tensor, positions included (the encoder sees a set of tokens, so this changes nothing it reads);
#: ``neurons`` applies a random function-preserving neuron permutation to the whole model
#: (:mod:`~ml_core.weights.permutations`) and re-tokenizes it: rows move, and the columns of the
#: layers that read them move with them.
ViewPermutation = Literal["rows", "neurons"]


@dataclass(frozen=True)
class TokenEncoderTrainingConfig:
    """How a :class:`WeightTokenEncoder` is trained; saved with the artifact.

    Each epoch draws ``steps_per_epoch`` batches of ``batch_size`` models x 2 views; validation
    draws ``val_steps`` batches from the validation models (fixed by ``seed``). ``permutation``: how
    each view reorders the weights (:data:`ViewPermutation`).
    """

    model: TokenEncoderConfig = field(default_factory=TokenEncoderConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=12, lr=1e-3, weight_decay=0.01, scheduler="cosine", early_stopping_patience=None))
    batch_size: int = 32
    steps_per_epoch: int = 40
    val_steps: int = 8
    mask_fraction: float = 0.3
    contrastive_weight: float = 1.0
    temperature: float = 0.1
    noise_std: float = 0.05
    token_dropout: float = 0.1
    view_distance: int = 4  # the second view starts within this many windows of the first
    permutation: ViewPermutation = "rows"
    corpus_negatives: bool = True  # a run's other checkpoints count among a window's negatives
    corpus_views: Literal["checkpoint", "run"] = "checkpoint"  # "run": a second view may be another checkpoint of the run
    max_tokens_per_model: int = 8192
    max_total_tokens: int = 1_048_576
    val_fraction: float = 0.2
    seed: int = 0


def model_token_count(params: ModelParameters, token_size: int) -> int:
    """How many tokens :func:`~ml_core.weights.weight_tokens.model_tokens` yields (from the index alone)."""
    total = 0
    for entry in params.index.entries:
        if entry.numel == 0:
            continue
        rows = 1 if len(entry.shape) <= 1 else entry.shape[0]
        total += rows * max(1, math.ceil(entry.numel // rows / token_size))
    return total


def sample_model_tokens(params: ModelParameters, budget: int, token_size: int, rng: np.random.Generator,
                        permuter: TokenPermuter | None = None) -> WeightTokens:
    """Every token of a model, or, past ``budget``, ``budget`` tokens (rounded down to a multiple of
    the run count) in 16 contiguous, non-overlapping runs at random places, one in each sixteenth of
    the network (network order kept); read one tensor at a time. ``permuter``: given the sampled
    tensors as they are read, so that it can re-tokenize the sample under neuron permutations."""
    n = model_token_count(params, token_size)
    if n <= budget:
        keep = None
    else:  # one run at a random place in each of `runs` equal strata: runs never overlap
        runs = min(16, budget)
        length, stratum = budget // runs, n // runs
        keep = np.zeros(n, bool)
        for k in range(runs):
            start = k * stratum + int(rng.integers(stratum - length + 1))
            keep[start : start + length] = True
    parts, seen = [], 0
    for entry, values, tokens in model_tensor_tokens(params, token_size):
        count = len(tokens)
        kept = np.arange(count) if keep is None else np.flatnonzero(keep[seen : seen + count])
        if len(kept):
            parts.append(tokens if keep is None else tokens.take(kept))
        if permuter is not None:
            permuter.add(entry, values, kept)
        seen += count
    if permuter is not None:
        permuter.finish()
    return WeightTokens.concatenate(parts, token_size)


def _shuffle_rows(positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of a window that shuffles its tokens among those of the same tensor (same depth)."""
    order = np.arange(len(positions))
    depth = positions[:, 0]
    for value in np.unique(depth):
        idx = np.flatnonzero(depth == value)
        order[idx] = rng.permutation(idx)
    return order


class WindowSampler:
    """Draws batches of paired views from the token samples of a set of models (see module docstring)."""

    def __init__(self, corpus: list[WeightTokens], config: TokenEncoderTrainingConfig, steps: int, seed: int,
                 permuters: list[TokenPermuter | None] | None = None, runs: list[int] | None = None):
        permuters = permuters or [None] * len(corpus)
        runs = list(range(len(corpus))) if runs is None else runs  # which training run each sample is of
        self.corpus = [c for c in corpus if len(c)]
        self.permuters = [p for c, p in zip(corpus, permuters, strict=True) if len(c)]
        self.runs = [r for c, r in zip(corpus, runs, strict=True) if len(c)]
        self.members: dict[int, list[int]] = {}
        for i, run in enumerate(self.runs):
            self.members.setdefault(run, []).append(i)
        self.config = config
        self.steps = steps
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def _window(self, model: int, start: int, rng: np.random.Generator, augment: bool) -> tuple[np.ndarray, ...]:
        c = self.config
        tokens, permuter = self.corpus[model], self.permuters[model]
        w = c.model.window
        stop = min(start + w, len(tokens))
        values = np.zeros((w, c.model.token_size), np.float32)
        positions = np.zeros((w, N_POSITION_FEATURES), np.float32)
        present = np.zeros(w, bool)
        n = stop - start
        values[:n], positions[:n], present[:n] = tokens.values[start:stop], tokens.positions[start:stop], True
        order = np.arange(n)
        if augment and c.permutation == "neurons" and permuter:
            permuter.permuted(start, stop, values[:n], positions[:n], rng)
        elif augment and c.permutation == "rows":
            order = _shuffle_rows(positions[:n], rng)
            values[:n], positions[:n] = values[:n][order], positions[:n][order]
        if augment:
            values[:n] += c.noise_std * rng.standard_normal(values[:n].shape).astype(np.float32) * tokens.mask[start:stop][order]
            drop = rng.random(n) < c.token_dropout
            if drop.all():
                drop[rng.integers(n)] = False
            present[:n] &= ~drop
        value_mask = np.zeros((w, c.model.token_size), bool)
        value_mask[:n] = tokens.mask[start:stop][order]
        value_mask &= present[:, None]
        return values, positions, present, value_mask

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        w = c.model.window
        picks = rng.choice(len(self.corpus), size=min(c.batch_size, len(self.corpus)), replace=False)
        views: list[list[tuple[np.ndarray, ...]]] = [[], []]
        for model in picks:
            tokens = self.corpus[model]
            last = max(len(tokens) - w, 0)
            first = int(rng.integers(last + 1))
            other = model
            if c.corpus_views == "run":  # the second view from any checkpoint of the same run, at the same place
                other = int(rng.choice(self.members[self.runs[model]]))
            last_other = max(len(self.corpus[other]) - w, 0)
            second = int(np.clip(first + rng.integers(-c.view_distance * w, c.view_distance * w + 1), 0, last_other))
            views[0].append(self._window(model, first, rng, True))
            views[1].append(self._window(other, second, rng, True))
        out: dict[str, torch.Tensor] = {}
        for v, items in enumerate(views):
            values, positions, present, value_mask = (np.stack(x) for x in zip(*items, strict=True))
            hidden = (rng.random(present.shape) < c.mask_fraction) & present
            out[f"values{v}"] = torch.from_numpy(values)
            out[f"positions{v}"] = torch.from_numpy(positions)
            out[f"present{v}"] = torch.from_numpy(present)
            out[f"hidden{v}"] = torch.from_numpy(hidden)
            out[f"value_mask{v}"] = torch.from_numpy(value_mask)
        out["run"] = torch.as_tensor([self.runs[m] for m in picks])
        return out

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for _ in range(self.steps):
            yield self.batch(rng)


class FixedBatches:
    """The same batches every epoch (validation): drawn once by a seeded sampler."""

    def __init__(self, sampler: WindowSampler):
        self.batches = list(sampler)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float, runs: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of ``a (B, D)`` and ``b (B, D)``. ``runs (B,)``: rows of
    the same run are not negatives of each other (only the paired row is their positive)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    z = torch.cat([a, b])
    sim = z @ z.T / temperature
    n = len(a)
    if runs is not None:
        both = torch.cat([runs, runs]).to(sim.device)
        pair = torch.arange(2 * n, device=sim.device).remainder(n)
        sim = sim.masked_fill((both[:, None] == both[None, :]) & (pair[:, None] != pair[None, :]), float("-inf"))
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    return F.cross_entropy(sim, target)


class TokenEncoderTrainer(BaseTrainer):
    """Batches from :class:`WindowSampler`: two views, each masked for reconstruction."""

    model: WeightTokenEncoder

    def __init__(self, model: WeightTokenEncoder, training: TokenEncoderTrainingConfig, out_dir: Path | None = None):
        super().__init__(model, training.trainer, out_dir)
        self.training = training

    def compute_loss(self, batch: Any) -> torch.Tensor:
        codes, recon_losses = [], []
        for v in (0, 1):
            values, hidden = batch[f"values{v}"], batch[f"hidden{v}"]
            code, recon = self.model(values, batch[f"positions{v}"], batch[f"present{v}"], hidden)
            real = batch[f"value_mask{v}"].to(recon.dtype)
            recon_losses.append((((recon - values) ** 2) * real).sum() / real.sum().clamp_min(1.0))
            codes.append(self.model.projection(code))
        reconstruction = torch.stack(recon_losses).mean()
        runs = None if self.training.corpus_negatives else batch.get("run")
        contrastive = nt_xent(codes[0], codes[1], self.training.temperature, runs)
        self._last_batch_metrics = {"reconstruction": reconstruction.item(), "contrastive": contrastive.item()}
        return reconstruction + self.training.contrastive_weight * contrastive


def windowed(tokens: WeightTokens, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A model's tokens as consecutive windows (the last one padded; at least one):
    ``values (W, window, S)``, ``positions (W, window, P)``, ``present (W, window)``, ``mask (W, window, S)``."""
    n = len(tokens)
    n_windows = max(1, math.ceil(n / window))
    pad = n_windows * window - n

    def fold(array: np.ndarray, fill: Any) -> np.ndarray:
        tail = np.full((pad, *array.shape[1:]), fill, array.dtype)
        return np.concatenate([array, tail]).reshape(n_windows, window, *array.shape[1:])

    return fold(tokens.values, 0.0), fold(tokens.positions, 0.0), fold(np.ones(n, bool), False), fold(tokens.mask, False)


@dataclass
class TokenEncoderArtifact:
    """A trained :class:`WeightTokenEncoder` with its training config and figures."""

    model: WeightTokenEncoder
    info: dict[str, Any]
    training: TokenEncoderTrainingConfig = field(default_factory=TokenEncoderTrainingConfig)

    def encode_tokens(self, tokens: WeightTokens, batch_windows: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A model's tokens in consecutive windows -> ``codes (n_windows, code_dim)``, ``weights``
        (real tokens per window) and ``depth`` (mean relative depth per window)."""
        values, positions, present, _ = windowed(tokens, self.model.config.window)
        self.model.eval()
        codes = []
        with torch.inference_mode():
            for s in range(0, len(values), batch_windows):
                sl = slice(s, s + batch_windows)
                codes.append(self.model.encode(torch.from_numpy(values[sl]), torch.from_numpy(positions[sl]),
                                               torch.from_numpy(present[sl])).numpy())
        weights = present.sum(1).astype(np.float32)
        depth = (positions[..., 0] * present).sum(1) / np.maximum(weights, 1)
        return np.concatenate(codes).astype(np.float32), weights, depth.astype(np.float32)

    def save(self, directory: Any) -> None:
        directory = as_upath(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(self.model, directory / WEIGHTS_FILE)
        write_json(directory / CONFIG_FILE, {"model": asdict(self.model.config), "training": config_to_dict(self.training),
                                             "info": self.info})

    @classmethod
    def load(cls, directory: Any) -> TokenEncoderArtifact:
        directory = as_upath(directory)
        meta = read_json(directory / CONFIG_FILE)
        model = WeightTokenEncoder(TokenEncoderConfig(**meta["model"]))
        load_weights(model, directory / WEIGHTS_FILE)
        return cls(model=model, info=meta.get("info", {}),
                   training=config_from_dict(TokenEncoderTrainingConfig, meta["training"]))


def token_samples(models: dict[str, ModelParameters], names: list[str], config: TokenEncoderTrainingConfig,
                  rng: np.random.Generator) -> tuple[list[WeightTokens], list[TokenPermuter | None]]:
    """Each named model's token sample, within the per-model and total budgets, and (``permutation ==
    "neurons"``) the :class:`~ml_core.weights.permutations.TokenPermuter` of each sample (None where the
    config asks for none)."""
    budget = min(config.max_tokens_per_model, max(config.model.window, config.max_total_tokens // max(len(names), 1)))
    corpus, permuters = [], []
    for name in names:
        permuter = None
        if config.permutation == "neurons":
            permuter = TokenPermuter(model_permutation_groups(models[name]), config.model.token_size)
        corpus.append(sample_model_tokens(models[name], budget, config.model.token_size, rng, permuter))
        permuters.append(permuter)
    return corpus, permuters


def token_corpus(models: dict[str, ModelParameters], names: list[str], config: TokenEncoderTrainingConfig,
                 rng: np.random.Generator) -> list[WeightTokens]:
    """Each named model's token sample, within the per-model and total budgets (:func:`token_samples`)."""
    return token_samples(models, names, config, rng)[0]


def train_token_encoder(
    models: dict[str, ModelParameters], config: TokenEncoderTrainingConfig, out_dir: Path | None = None,
    corpus: Corpus | None = None,
) -> tuple[TokenEncoderArtifact, TrainingHistory]:
    """Train on the token samples of the training models (split by model); returns artifact and history.
    ``corpus``: extra training weights of the models on the training side of the split
    (:func:`~ml_core.weights.autoencoder.with_corpus`); validation reads the held-out models alone."""
    if not models:
        raise ValueError("no models to train the token encoder on")
    rng = np.random.default_rng(config.seed)
    train_names, val_names = split_models(list(models), config.val_fraction, config.seed)
    train_models, train_keys, train_runs = with_corpus(models, train_names, corpus)
    train_corpus, train_permuters = token_samples(train_models, train_keys, config, rng)
    run_ids = [train_names.index(run) for run in train_runs]
    train_loader = WindowSampler(train_corpus, config, config.steps_per_epoch, config.seed, train_permuters, run_ids)
    val_loader, val_corpus = None, []
    if val_names:
        val_corpus, val_permuters = token_samples(models, val_names, config, rng)
        val_loader = FixedBatches(WindowSampler(val_corpus, config, config.val_steps, config.seed + 1, val_permuters))
    torch.manual_seed(config.seed)
    model = WeightTokenEncoder(config.model)
    history = TokenEncoderTrainer(model, config, out_dir).fit(train_loader, val_loader)
    model.eval()
    artifact = TokenEncoderArtifact(model=model, info={}, training=config)
    split = "val" if val_corpus else "train"
    artifact.info = {"train_models": train_names, "val_models": val_names,
                     "n_corpus_models": len(train_keys) - len(train_names),
                     "n_train_tokens": int(sum(len(t) for t in train_corpus)), "eval_split": split,
                     **reconstruction_error(artifact, val_corpus or train_corpus)}
    return artifact, history


def reconstruction_error(artifact: TokenEncoderArtifact, corpus: list[WeightTokens], batch_windows: int = 256) -> dict[str, float]:
    """Reconstruction through the bottleneck of every window of ``corpus`` (nothing masked, nothing
    augmented): MSE over real values and its ratio to their variance (``relative_mse`` < 1: the
    bottleneck carries the weights better than their mean does)."""
    model, c = artifact.model, artifact.model.config
    se = total = sq = count = 0.0
    model.eval()
    with torch.inference_mode():
        for tokens in corpus:
            if not len(tokens):
                continue
            values, positions, present, mask = windowed(tokens, c.window)
            for s in range(0, len(values), batch_windows):
                sl = slice(s, s + batch_windows)
                _, recon = model(torch.from_numpy(values[sl]), torch.from_numpy(positions[sl]), torch.from_numpy(present[sl]))
                real = mask[sl]
                target = values[sl][real].astype(np.float64)
                se += float(((recon.numpy()[real] - target) ** 2).sum())
                total += float(target.sum())
                sq += float((target**2).sum())
                count += float(real.sum())
    return relative_error(se, total, sq, count)
