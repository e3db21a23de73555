"""How big a demo world is: the full benchmark, or a reduced one for tests (same code)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict


class WorldScale(BaseModel):
    """Every size of a demo world. Two are predefined: :data:`FULL` and :data:`REDUCED`.

    ``architectures`` maps each small architecture to its constructor kwargs; every one is
    pre-trained on every task of ``sources`` (``None`` = all source tasks). ``targets``
    (``None`` = all) picks the target datasets. A target gets ``min(train_per_class,
    its shots)`` train images per class, ``val_per_class`` val images and enough test images
    per class for about ``test_images`` in all. Each source task also gets a sample of
    ``source_sample_per_class`` pre-training images per class, which the models' cards point at.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    architectures: dict[str, dict[str, Any]]
    sources: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None
    source_train_per_class: int
    source_test_per_class: int
    pretrain_epochs: int
    pretrain_batch_size: int = 32
    train_per_class: int = 1000
    val_per_class: int = 4
    test_images: int = 520
    min_test_per_class: int = 8
    source_sample_per_class: int = 16  # images per class of each source task's sample (sources/)
    include_efficientnet: bool = True
    efficientnet_input_size: int = 64
    image_size: int = 32

    def test_per_class(self, n_classes: int) -> int:
        return max(self.min_test_per_class, math.ceil(self.test_images / n_classes))

    def shots(self, task_shots: int) -> int:
        return max(2, min(self.train_per_class, task_shots))


_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "smallcnn": {"width": 16, "depth": 3},
    "tinyresnet": {"width": 8, "blocks": [1, 1, 1]},
    "depthwisenet": {"width": 16, "depth": 4},
    "tinyvit": {"embed_dim": 48, "depth": 3, "num_heads": 3, "patch_size": 8},
}

FULL = WorldScale(
    name="full",
    architectures=_ARCHITECTURES,
    source_train_per_class=150,
    source_test_per_class=50,
    pretrain_epochs=15,
)
REDUCED = WorldScale(
    name="reduced",
    architectures={k: _ARCHITECTURES[k] for k in ("smallcnn", "depthwisenet")},
    sources=("digits", "gratings"),
    targets=("digit_parity", "arrows", "noise_grain", "sample_photos"),
    source_train_per_class=24,
    source_test_per_class=10,
    pretrain_epochs=2,
    train_per_class=4,
    val_per_class=2,
    source_sample_per_class=4,
    test_images=24,
    min_test_per_class=6,
)
SCALES = {s.name: s for s in (FULL, REDUCED)}
