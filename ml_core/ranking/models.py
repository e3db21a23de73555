"""Rankers that score every model of a zoo for a dataset (higher = better).

``RankingCrossAttentionTransformer`` (``architecture="encoder_decoder"``, the seed's design): an
encoder-decoder ``nn.Transformer`` (batch_first) with the dataset's tokens (image features) as
the *source* sequence and the models' tokens as the *target* sequence.

``architecture="cross_attention"`` (lighter): no encoder and no model-to-model attention; each
model token attends to the dataset tokens (``num_decoder_layers`` blocks of cross-attention +
MLP), then ``Linear(d_model, 1)``.

``architecture="linear"`` (the floor a network must beat): no tokens at all, only a learned
weighting of the per-(dataset, model) features below, ``score = w . features``.

None uses positional encodings: both sequences are sets, and the scores are
permutation-equivariant in the models. Optional per-(dataset, model) features ``(B, N, F)``
(e.g. the data-free prior, the nearest-dataset score and the source similarity) are appended to each model token and
also feed a linear *skip* score, so the network can learn "baseline + correction";
``residual_init`` starts it at exactly "sum of the baselines' z-scores, zero correction".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ml_core.ranking.features import FEATURE_NAMES


@dataclass(frozen=True)
class RankerConfig:
    """What builds a :class:`RankingCrossAttentionTransformer`; saved beside its weights.

    ``baseline_features``: the ranker also reads the baselines' scores of each (dataset, model)
    (:data:`~ml_core.ranking.features.FEATURE_NAMES`) as per-model inputs. ``residual_init``: with
    them, start as their plain sum (zero correction). ``dataset_token_dim`` / ``model_token_dim`` are
    the widths of the tokens it reads, set from the data when it is trained (0: not set yet).
    """

    architecture: Literal["encoder_decoder", "cross_attention", "linear"] = "encoder_decoder"
    d_model: int = 64
    nhead: int = 4
    num_encoder_layers: int = 1
    num_decoder_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.1
    baseline_features: bool = False
    residual_init: bool = False
    dataset_token_dim: int = 0
    model_token_dim: int = 0

    @property
    def model_feature_dim(self) -> int:
        """Per-(dataset, model) input features: the baselines' scores, or none."""
        return len(FEATURE_NAMES) if self.baseline_features else 0


class _CrossAttentionBlock(nn.Module):
    """Queries attend to keys/values, then an MLP; pre-norm residual."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, dim_feedforward), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim_feedforward, d_model)
        )

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None) -> torch.Tensor:
        attended, _ = self.attn(self.norm_q(queries), memory, memory, key_padding_mask=memory_pad, need_weights=False)
        queries = queries + attended
        return queries + self.ff(self.norm_ff(queries))


class RankingCrossAttentionTransformer(nn.Module):
    """``forward(dataset_tokens (B,M,Dd), model_tokens (B,N,Dm), dataset_mask (B,M), model_mask (B,N),
    model_features (B,N,F)) -> scores (B,N)``.

    Masks are True where a token is real. Padded models get score 0 (ignore them downstream).
    """

    def __init__(self, config: RankerConfig):
        super().__init__()
        self.config = config
        c = config
        if c.architecture == "linear":
            if not c.model_feature_dim:
                raise ValueError("the linear ranker scores per-model features only: set baseline_features")
            self.skip = nn.Linear(c.model_feature_dim, 1, bias=False)
            nn.init.constant_(self.skip.weight, 1.0 if c.residual_init else 0.1)  # residual: their plain sum
            return
        if c.dataset_token_dim <= 0 or c.model_token_dim <= 0:
            raise ValueError(f"RankerConfig: dataset_token_dim and model_token_dim must be set (the widths of the tokens "
                             f"it reads), got {c.dataset_token_dim} and {c.model_token_dim}")
        model_in = c.model_token_dim + c.model_feature_dim
        self.dataset_proj = nn.Sequential(nn.LayerNorm(c.dataset_token_dim), nn.Linear(c.dataset_token_dim, c.d_model))
        self.model_proj = nn.Sequential(nn.LayerNorm(model_in), nn.Linear(model_in, c.d_model))
        if c.architecture == "encoder_decoder":
            self.transformer = nn.Transformer(
                d_model=c.d_model,
                nhead=c.nhead,
                num_encoder_layers=c.num_encoder_layers,
                num_decoder_layers=c.num_decoder_layers,
                dim_feedforward=c.dim_feedforward,
                dropout=c.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
        elif c.architecture == "cross_attention":
            self.blocks = nn.ModuleList(
                _CrossAttentionBlock(c.d_model, c.nhead, c.dim_feedforward, c.dropout)
                for _ in range(max(c.num_decoder_layers, 1))
            )
            self.out_norm = nn.LayerNorm(c.d_model)
        else:
            raise ValueError(f"unknown ranker architecture {c.architecture!r}")
        self.score_head = nn.Linear(c.d_model, 1)
        self.skip = nn.Linear(c.model_feature_dim, 1, bias=False) if c.model_feature_dim else None
        if c.residual_init and self.skip is not None:
            nn.init.ones_(self.skip.weight)  # the baselines' z-scores, summed
            nn.init.zeros_(self.score_head.weight)  # the learned correction starts at zero
            nn.init.zeros_(self.score_head.bias)

    def forward(
        self,
        dataset_tokens: torch.Tensor,
        model_tokens: torch.Tensor,
        dataset_mask: torch.Tensor | None = None,
        model_mask: torch.Tensor | None = None,
        model_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.config.model_feature_dim:
            if model_features is None:
                raise ValueError("this ranker was built with model features: pass model_features (B, N, F)")
            if self.config.architecture == "linear":
                scores = self.skip(model_features).squeeze(-1)
                return scores if model_mask is None else scores.masked_fill(~model_mask.bool(), 0.0)
            model_tokens = torch.cat([model_tokens, model_features], dim=-1)
        src = self.dataset_proj(dataset_tokens)
        tgt = self.model_proj(model_tokens)
        src_pad = None if dataset_mask is None else ~dataset_mask.bool()
        tgt_pad = None if model_mask is None else ~model_mask.bool()
        if self.config.architecture == "encoder_decoder":
            out = self.transformer(
                src, tgt, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad
            )
        else:
            out = tgt
            for block in self.blocks:
                out = block(out, src, src_pad)
            out = self.out_norm(out)
        scores = self.score_head(out).squeeze(-1)
        if self.skip is not None:
            scores = scores + self.skip(model_features).squeeze(-1)
        if model_mask is not None:
            scores = scores.masked_fill(~model_mask.bool(), 0.0)
        return scores
