"""Model embeddings: every chunk of a model encoded, then pooled into the model's tokens.

Pooling (documented choice):

* ``token`` ``(code_dim,)``: the mean of the chunk codes weighted by each chunk's fraction of
  real values, so the zero-padded tail chunk counts only for what it holds. Every chunk of the
  whole network contributes, in proportion to its share of the parameters.
* ``segment_tokens`` ``(n_segments, code_dim)``: the same weighted mean over ``n_segments``
  contiguous, equal slices of the chunk sequence (network order: early layers first), a
  coarse per-depth view for rankers that take several tokens per model.

The chunk codes themselves are kept, so other poolings need no re-encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_core.artifacts import as_upath
from ml_core.weights.autoencoder import AutoEncoderArtifact
from ml_core.weights.parameters import ModelParameters

EMBEDDING_FILE = "embedding.npz"


@dataclass(frozen=True)
class EmbeddingConfig:
    """How a model is embedded: chunks encoded per batch, and the per-depth segments pooled."""

    batch_rows: int = 256
    n_segments: int = 8


@dataclass
class ModelEmbedding:
    codes: np.ndarray  # (n_chunks, code_dim) float32
    weights: np.ndarray  # (n_chunks,) fraction of real values per chunk
    token: np.ndarray  # (code_dim,)
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


def embed_model(
    params: ModelParameters, autoencoder: AutoEncoderArtifact, *, batch_rows: int = 256, n_segments: int = 8
) -> ModelEmbedding:
    """Encode all ``n_chunks`` chunks of one model (streamed in ``batch_rows`` blocks) and pool them."""
    codes = []
    for start in range(0, params.n_chunks, batch_rows):
        rows = slice(start, min(start + batch_rows, params.n_chunks))
        codes.append(autoencoder.encode_chunks(np.asarray(params.chunks[rows]), params.valid_mask(rows)))
    code_array = np.concatenate(codes)
    weights = (params.valid_length / params.index.chunk_size).astype(np.float32)
    token, segment_tokens = pool_codes(code_array, weights, n_segments)
    return ModelEmbedding(codes=code_array, weights=weights, token=token, segment_tokens=segment_tokens)
