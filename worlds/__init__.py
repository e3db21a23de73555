"""The built-in worlds: a really pre-trained mini-zoo, target datasets and, for tests, a stand-in.

One generator, four scales (:mod:`~worlds.scale`): :data:`FULL` (the benchmark ``make demo``
runs), :data:`WIDE` (the same zoo, 32 targets in 26 families, for leave-family-out figures), :data:`REDUCED` (the same world cut down for tests) and :data:`STANDIN` (the pipeline
tests' stand-in: ``.pt`` checkpoints, a probe-measured performance table, a random open_clip
encoder).

* :mod:`~worlds.tasks`: 6 source tasks and 19 target datasets (32x32 RGB, seeded);
* :mod:`~worlds.wide_tasks`: the wide world's 13 extra targets, one per new family;
* :mod:`~worlds.sources`: the offline image pools they draw from, split disjointly;
* :mod:`~worlds.images`: drawing primitives;
* :mod:`~worlds.zoo`: pre-training the small nets, converting the ImageNet EfficientNet-Lite0,
  their model cards;
* :mod:`~worlds.table`: the stand-in's probe-measured performance table;
* :mod:`~worlds.world`: :func:`build_world`, cached by a manifest of hashes.

Only :mod:`ml_core` is imported here; the pipeline reads a world through its resources like any
user's folders.
"""

from worlds.scale import FULL, REDUCED, SCALES, STANDIN, WIDE, WorldScale
from worlds.table import nearest_class_mean_accuracy
from worlds.tasks import SOURCE_TASKS, TARGET_TASKS, ImageTask
from worlds.wide_tasks import WIDE_TARGET_TASKS
from worlds.world import (
    DATASET_CARD_NAME,
    TABLE_NAME,
    DatasetCard,
    World,
    WorldError,
    WorldManifest,
    build_world,
    resolve_scale,
    source_accuracies,
)
from worlds.zoo import EFFICIENTNET_NAME

__all__ = [
    "DATASET_CARD_NAME",
    "EFFICIENTNET_NAME",
    "FULL",
    "REDUCED",
    "SCALES",
    "SOURCE_TASKS",
    "STANDIN",
    "TABLE_NAME",
    "TARGET_TASKS",
    "WIDE",
    "WIDE_TARGET_TASKS",
    "DatasetCard",
    "ImageTask",
    "World",
    "WorldError",
    "WorldManifest",
    "WorldScale",
    "build_world",
    "nearest_class_mean_accuracy",
    "resolve_scale",
    "source_accuracies",
]
