"""The weight embedder of the ``autoencoder`` asset: one config that picks and trains either kind.

* ``token_encoder`` (the default): :class:`~ml_core.weights.token_encoder.WeightTokenEncoder`, a
  transformer over windows of weight tokens (rows of tensors), masked reconstruction + contrastive
  views; the one whose embeddings pass the probes (:mod:`ml_core.evaluation.probes`).
* ``chunk_autoencoder``: the seed's :class:`~ml_core.weights.autoencoder.AutoEncoder` 8192 -> 1024 ->
  512 over the flattened chunks, kept as the baseline.

Both artifacts have ``.info`` (``train_models``, ``val_models``, ``eval_split``, ``relative_mse``) and
``.training``; :func:`embedder_config` gives back the :class:`WeightEmbedderConfig` that retrains one
the same way (e.g. without held-out models).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ml_core.artifacts import as_upath
from ml_core.trainer import TrainingHistory
from ml_core.weights import autoencoder as chunk_module
from ml_core.weights import token_encoder as token_module
from ml_core.weights.autoencoder import AutoEncoderArtifact, AutoEncoderTrainingConfig, Corpus, train_autoencoder
from ml_core.weights.parameters import ModelParameters
from ml_core.weights.token_encoder import TokenEncoderArtifact, TokenEncoderTrainingConfig, train_token_encoder

WeightEmbedder = AutoEncoderArtifact | TokenEncoderArtifact
EmbedderMethod = Literal["token_encoder", "chunk_autoencoder"]


@dataclass(frozen=True)
class WeightEmbedderConfig:
    """Which weight embedder to train (``method``) and how; the other kind's config is ignored."""

    method: EmbedderMethod = "token_encoder"
    tokens: TokenEncoderTrainingConfig = field(default_factory=TokenEncoderTrainingConfig)
    chunks: AutoEncoderTrainingConfig = field(default_factory=AutoEncoderTrainingConfig)

    def with_seed(self, seed: int) -> WeightEmbedderConfig:
        """The same config, both kinds' sampling and training seeded by ``seed``."""
        return replace(
            self,
            tokens=replace(self.tokens, seed=seed, trainer=replace(self.tokens.trainer, seed=seed)),
            chunks=replace(self.chunks, seed=seed, trainer=replace(self.chunks.trainer, seed=seed)),
        )


def train_embedder(
    models: dict[str, ModelParameters], config: WeightEmbedderConfig, out_dir: Path | None = None,
    corpus: Corpus | None = None,
) -> tuple[WeightEmbedder, TrainingHistory]:
    """Train the embedder ``config.method`` names on ``models`` (split into train / validation by model),
    plus, for each model on the training side, its ``corpus`` weights (e.g. its run's intermediate
    checkpoints), which are never embedded or ranked."""
    if config.method == "token_encoder":
        return train_token_encoder(models, config.tokens, out_dir, corpus)
    if config.method == "chunk_autoencoder":
        return train_autoencoder(models, config.chunks, out_dir, corpus)
    raise ValueError(f"unknown weight embedder {config.method!r} (token_encoder or chunk_autoencoder)")


def embedder_config(embedder: WeightEmbedder) -> WeightEmbedderConfig:
    """The config that trains ``embedder`` again the same way."""
    if isinstance(embedder, TokenEncoderArtifact):
        return WeightEmbedderConfig(method="token_encoder", tokens=embedder.training)
    return WeightEmbedderConfig(method="chunk_autoencoder", chunks=embedder.training)


def load_embedder(directory: Any) -> WeightEmbedder:
    """Whichever embedder ``directory`` holds (by its config file)."""
    directory = as_upath(directory)
    if (directory / token_module.CONFIG_FILE).exists():
        return TokenEncoderArtifact.load(directory)
    if (directory / chunk_module.CONFIG_FILE).exists():
        return AutoEncoderArtifact.load(directory)
    raise FileNotFoundError(f"{directory}: no weight embedder ({token_module.CONFIG_FILE} or {chunk_module.CONFIG_FILE})")
