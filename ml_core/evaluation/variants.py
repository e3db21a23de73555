"""The learned-ranker variants the held-out evaluation compares, as changes of one base config.

Every variant starts from :func:`evaluation_base` and changes a few fields
(:func:`ml_core.configs.replace_nested`: nested dicts for the model and the loop). The evaluation
reports the variant with the best validation score as ``ranker``; :data:`VARIANT_SETS` names the
sets it runs: ``default`` (the ``ranker_evaluation`` asset) and ``sweep`` (every variant,
``benchmarks/ranking_quality.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml_core.configs import replace_nested
from ml_core.ranking import RankerConfig, RankerTrainingConfig
from ml_core.trainer import TrainerConfig


def evaluation_base() -> RankerTrainingConfig:
    """What every variant starts from: 64-wide attention layers on class means, model dropout 0.2,
    40 epochs of AdamW at 1e-3, early-stopped on the fold's validation datasets (patience 10)."""
    return RankerTrainingConfig(
        model=RankerConfig(d_model=64, dim_feedforward=128),
        token_mode="class_means",
        model_dropout=0.2,
        trainer=TrainerConfig(epochs=40, lr=1e-3, weight_decay=1e-2, early_stopping_patience=10, scheduler="none"),
    )


#: variant name -> its changes to the base config.
VARIANTS: dict[str, dict[str, Any]] = {
    "seed_transformer": {"model": {"architecture": "encoder_decoder"}, "loss": "listmle"},
    "cross_attention+baselines": {
        "model": {"architecture": "cross_attention", "baseline_features": True}, "loss": "pairwise",
    },
    # a learned weighting of the baselines' opinions, the floor for the networks. It trains with the
    # base's ListMLE; the product's ranker (ml_core.ranking.product_ranker) is the same with pairwise loss
    "linear+baselines": {
        "model": {"architecture": "linear", "baseline_features": True, "residual_init": True},
        "trainer": {"lr": 0.05},
    },
    "seed_transformer+rows": {"model": {"architecture": "encoder_decoder"}, "loss": "listmle", "token_mode": "rows"},
    "cross_attention": {"model": {"architecture": "cross_attention"}, "loss": "listmle"},
    "cross_attention+baselines+listmle": {"model": {"architecture": "cross_attention", "baseline_features": True}},
    "transformer+baselines": {"model": {"architecture": "encoder_decoder", "baseline_features": True}},
    "cross_attention+baselines+no_dropout": {
        "model": {"architecture": "cross_attention", "baseline_features": True}, "loss": "pairwise",
        "model_dropout": 0.0,
    },
    "cross_attention+baselines+residual": {  # starts as prior + nearest exactly; keeps that if val says so
        "model": {"architecture": "cross_attention", "baseline_features": True, "residual_init": True},
        "loss": "pairwise",
    },
}
DEFAULT_VARIANTS = ("seed_transformer", "cross_attention+baselines", "linear+baselines")
VARIANT_SETS: dict[str, tuple[str, ...]] = {"default": DEFAULT_VARIANTS, "sweep": tuple(VARIANTS)}


def variant_configs(
    names: Sequence[str], base: RankerTrainingConfig | None = None, *, seed: int = 0
) -> dict[str, RankerTrainingConfig]:
    """The named variants' configs: ``base`` (default :func:`evaluation_base`) with each one's changes,
    trained with ``seed``. A name may also be a set of :data:`VARIANT_SETS` (``default``, ``sweep``)."""
    base = (base or evaluation_base()).with_seed(seed)
    resolved: list[str] = []
    for name in names:
        resolved += VARIANT_SETS.get(name, (name,))
    unknown = [n for n in resolved if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ranker variants {unknown}; known: {sorted(VARIANTS)} or sets {sorted(VARIANT_SETS)}")
    return {name: replace_nested(base, VARIANTS[name]) for name in dict.fromkeys(resolved)}
