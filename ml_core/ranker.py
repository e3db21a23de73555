"""``RankingCrossAttentionTransformer``: scores every model of a zoo for a dataset.

An encoder-decoder ``nn.Transformer`` (batch_first): the dataset's tokens (image features)
are the *source* sequence, the models' tokens the *target* sequence. Neither has positional
encodings: both are sets, and the scores are permutation-equivariant in the models. Each
model's decoder output goes through ``Linear(d_model, 1)`` to a score (higher = better).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class RankerConfig:
    dataset_token_dim: int
    model_token_dim: int
    d_model: int = 128
    nhead: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    dim_feedforward: int = 256
    dropout: float = 0.1


class RankingCrossAttentionTransformer(nn.Module):
    """``forward(dataset_tokens (B,M,Dd), model_tokens (B,N,Dm), dataset_mask (B,M), model_mask (B,N)) -> (B,N)``.

    Masks are True where a token is real. Padded models get score 0 (ignore them downstream).
    """

    def __init__(self, config: RankerConfig):
        super().__init__()
        self.config = config
        c = config
        self.dataset_proj = nn.Sequential(nn.LayerNorm(c.dataset_token_dim), nn.Linear(c.dataset_token_dim, c.d_model))
        self.model_proj = nn.Sequential(nn.LayerNorm(c.model_token_dim), nn.Linear(c.model_token_dim, c.d_model))
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
        self.score_head = nn.Linear(c.d_model, 1)

    def forward(
        self,
        dataset_tokens: torch.Tensor,
        model_tokens: torch.Tensor,
        dataset_mask: torch.Tensor | None = None,
        model_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        src = self.dataset_proj(dataset_tokens)
        tgt = self.model_proj(model_tokens)
        src_pad = None if dataset_mask is None else ~dataset_mask.bool()
        tgt_pad = None if model_mask is None else ~model_mask.bool()
        out = self.transformer(
            src,
            tgt,
            src_key_padding_mask=src_pad,
            tgt_key_padding_mask=tgt_pad,
            memory_key_padding_mask=src_pad,
        )
        scores = self.score_head(out).squeeze(-1)
        if model_mask is not None:
            scores = scores.masked_fill(~model_mask.bool(), 0.0)
        return scores
