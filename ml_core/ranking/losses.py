"""Listwise ranking losses and the temperature schedule that goes with them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def list_mle_loss(
    scores: torch.Tensor, true_scores: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """ListMLE: negative Plackett-Luce log-likelihood of the true order under ``scores / T``.

    Args:
        scores: ``(B, N)`` predicted scores, higher = better.
        true_scores: ``(B, N)`` ground-truth scores, higher = better (defines the true order).
        mask: ``(B, N)`` True for models with ground truth; others take no part.
        temperature: divides the scores (a smaller T sharpens the distribution).

    Returns the mean over lists of the per-list loss divided by its number of valid models.
    """
    mask = mask.bool()
    s = scores / temperature
    keyed = true_scores.masked_fill(~mask, -math.inf)
    order = torch.argsort(keyed, dim=-1, descending=True, stable=True)
    s_sorted = torch.gather(s, -1, order)
    m_sorted = torch.gather(mask, -1, order)
    s_masked = s_sorted.masked_fill(~m_sorted, -math.inf)
    # log sum_{j >= i} exp(s_j): suffix log-sum-exp over the remaining models
    suffix = torch.logcumsumexp(s_masked.flip(-1), dim=-1).flip(-1)
    per_item = torch.where(m_sorted, suffix - s_sorted, torch.zeros_like(s_sorted))
    counts = m_sorted.sum(-1)
    valid_lists = counts >= 2
    if not valid_lists.any():
        return scores.sum() * 0.0
    per_list = per_item.sum(-1)[valid_lists] / counts[valid_lists]
    return per_list.mean()


def pairwise_logistic_loss(scores: torch.Tensor, true_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RankNet-style loss: ``log(1 + exp(-(s_i - s_j)))`` over pairs with ``true_i > true_j``."""
    mask = mask.bool()
    diff_true = true_scores.unsqueeze(-1) - true_scores.unsqueeze(-2)
    diff_pred = scores.unsqueeze(-1) - scores.unsqueeze(-2)
    pair_mask = (diff_true > 0) & mask.unsqueeze(-1) & mask.unsqueeze(-2)
    if not pair_mask.any():
        return scores.sum() * 0.0
    return torch.nn.functional.softplus(-diff_pred)[pair_mask].mean()


@dataclass
class TemperatureSchedule:
    """Exponential decay from ``start`` to ``end`` over ``steps`` training steps.

    It advances only when :meth:`step` is called, which the trainer does after training
    steps, never during validation. ``start == end`` means a constant temperature.
    """

    start: float = 1.0
    end: float = 1.0
    steps: int = 1000
    current_step: int = 0

    @property
    def value(self) -> float:
        progress = min(self.current_step / max(self.steps, 1), 1.0)
        return float(self.start * (self.end / self.start) ** progress)

    def step(self) -> None:
        self.current_step += 1
