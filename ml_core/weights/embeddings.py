"""Model embeddings: every piece of a model encoded, then pooled into the model's tokens.

The pieces are the weight-token windows of a :class:`~ml_core.weights.token_encoder.TokenEncoderArtifact`
(network order) or the 8192-value chunks of an :class:`~ml_core.weights.autoencoder.AutoEncoderArtifact`
(checkpoint key order). Pooling (documented choice):

* ``segment_tokens`` ``(n_segments, code_dim)``: the mean of the piece codes weighted by each
  piece's real values (the zero-padded tail counts only for what it holds), over ``n_segments``
  contiguous, equal slices of the piece sequence, a coarse per-depth view;
* ``token``: the weighted mean over all pieces ``(code_dim,)``, followed, when ``token_segments``
  > 0, by the means of ``token_segments`` contiguous slices: ``((1 + token_segments) * code_dim,)``;
  for a token encoder with ``structure``, then by the mean of the weight tokens' position features
  (:data:`~ml_core.weights.weight_tokens.POSITION_FEATURES`: the shares of tensor roles, mean fan-in /
  fan-out and scale), a size-independent summary of the network's layout (13 numbers).
  Every piece of the whole network contributes; nothing depends on the model's size.

The piece codes themselves are kept, so other poolings need no re-encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_core.artifacts import as_upath
from ml_core.weights.autoencoder import AutoEncoderArtifact
from ml_core.weights.parameters import ModelParameters
from ml_core.weights.token_encoder import TokenEncoderArtifact
from ml_core.weights.weight_tokens import WeightTokens, model_tokens

EMBEDDING_FILE = "embedding.npz"


@dataclass(frozen=True)
class EmbeddingConfig:
    """How a model is embedded: pieces encoded per batch, the per-depth segments pooled, and how many
    depth segments the model token appends to the overall mean (0: the mean alone, as the seed did)."""

    batch_rows: int = 256
    n_segments: int = 8
    token_segments: int = 4
    structure: bool = True  # token-encoder embeddings: append the mean position features of the tokens


@dataclass
class ModelEmbedding:
    codes: np.ndarray  # (n_pieces, code_dim) float32
    weights: np.ndarray  # (n_pieces,) fraction of real values per piece
    token: np.ndarray  # ((1 + token_segments) * code_dim,)
    segment_tokens: np.ndarray  # (n_segments, code_dim)

    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for array in (self.codes, self.weights, self.token, self.segment_tokens):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def save(self, directory: Any) -> None:
        directory = as_upath(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / EMBEDDING_FILE).open("wb") as handle:
            np.savez(
                handle, codes=self.codes, weights=self.weights, token=self.token, segment_tokens=self.segment_tokens
            )

    @classmethod
    def load(cls, directory: Any) -> ModelEmbedding:
        with (as_upath(directory) / EMBEDDING_FILE).open("rb") as handle:
            data = np.load(handle, allow_pickle=False)
            return cls(**{k: np.asarray(data[k]) for k in ("codes", "weights", "token", "segment_tokens")})


def pool_codes(codes: np.ndarray, weights: np.ndarray, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of ``codes (n, d)`` overall and over ``n_segments`` contiguous slices.

    Returns ``token (d,)`` and ``segment_tokens (n_segments, d)``; a model with fewer chunks than
    segments repeats its chunks across segments (slices never empty).
    """
    token = (codes * weights[:, None]).sum(0) / weights.sum()
    bounds = np.linspace(0, len(codes), n_segments + 1)
    segments = []
    for i in range(n_segments):
        lo = int(np.floor(bounds[i]))
        hi = max(int(np.ceil(bounds[i + 1])), lo + 1)
        lo, hi = min(lo, len(codes) - 1), min(hi, len(codes))
        w = weights[lo:hi]
        segments.append((codes[lo:hi] * w[:, None]).sum(0) / w.sum())
    return token.astype(np.float32), np.stack(segments).astype(np.float32)


def _encode_chunks(params: ModelParameters, autoencoder: AutoEncoderArtifact, batch_rows: int) -> tuple[np.ndarray, np.ndarray]:
    codes = []
    for start in range(0, params.n_chunks, batch_rows):
        rows = slice(start, min(start + batch_rows, params.n_chunks))
        codes.append(autoencoder.encode_chunks(np.asarray(params.chunks[rows]), params.valid_mask(rows)))
    return np.concatenate(codes), (params.valid_length / params.index.chunk_size).astype(np.float32)


def _encode_windows(
    params: ModelParameters, encoder: TokenEncoderArtifact, batch_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of consecutive tokens encoded block by block: memory holds one block of
    ``batch_rows`` windows (plus one tensor), whatever the model's size. Returns the window codes,
    their weights and the mean position features of all the tokens."""
    config = encoder.model.config
    block = batch_rows * config.window
    codes, weights, pending = [], [], []
    pending_count = 0
    position_sum, n_tokens = 0.0, 0

    def flush() -> None:
        nonlocal position_sum, n_tokens
        tokens = WeightTokens.concatenate(pending, config.token_size)
        position_sum = position_sum + tokens.positions.astype(np.float64).sum(0)
        n_tokens += len(tokens)
        c, w, _ = encoder.encode_tokens(tokens, batch_rows)
        codes.append(c)
        weights.append(w / config.window)
        pending.clear()

    for tokens in model_tokens(params, config.token_size):
        pending.append(tokens)
        pending_count += len(tokens)
        while pending_count >= block:
            joined = WeightTokens.concatenate(pending, config.token_size)
            pending[:] = [joined.take(slice(0, block))]
            flush()
            pending.append(joined.take(slice(block, None)))
            pending_count -= block
    if pending_count or not codes:
        flush()
    return np.concatenate(codes), np.concatenate(weights).astype(np.float32), position_sum / max(n_tokens, 1)


def embed_model(
    params: ModelParameters,
    embedder: AutoEncoderArtifact | TokenEncoderArtifact,
    *,
    batch_rows: int = 256,
    n_segments: int = 8,
    token_segments: int = 4,
    structure: bool = True,
) -> ModelEmbedding:
    """Encode every piece of one model (streamed in blocks of ``batch_rows``) and pool them."""
    layout = None
    if isinstance(embedder, TokenEncoderArtifact):
        codes, weights, layout = _encode_windows(params, embedder, batch_rows)
    else:
        codes, weights = _encode_chunks(params, embedder, batch_rows)
    mean, segment_tokens = pool_codes(codes, weights, n_segments)
    token = mean
    if token_segments:
        token = np.concatenate([mean, pool_codes(codes, weights, token_segments)[1].reshape(-1)])
    if structure and layout is not None:
        token = np.concatenate([token, layout])
    return ModelEmbedding(codes=codes, weights=weights, token=token.astype(np.float32), segment_tokens=segment_tokens)


def embed(params: ModelParameters, embedder: AutoEncoderArtifact | TokenEncoderArtifact,
          config: EmbeddingConfig | None = None) -> ModelEmbedding:
    """:func:`embed_model` with the settings of ``config`` (default :class:`EmbeddingConfig`)."""
    c = config or EmbeddingConfig()
    return embed_model(params, embedder, batch_rows=c.batch_rows, n_segments=c.n_segments,
                       token_segments=c.token_segments, structure=c.structure)
