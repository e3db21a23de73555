"""The built-in demo world: a really pre-trained mini-zoo, target datasets, the benchmark.

* :mod:`~ml_core.demo_world.tasks`: 6 source tasks and 19 target datasets (32x32 RGB, seeded);
* :mod:`~ml_core.demo_world.sources`: the offline image pools they draw from, split disjointly;
* :mod:`~ml_core.demo_world.zoo`: pre-training the small nets, converting the ImageNet
  EfficientNet-Lite0, their sidecar cards;
* :mod:`~ml_core.demo_world.scale`: :data:`FULL` (the benchmark) and :data:`REDUCED` (tests);
* :mod:`~ml_core.demo_world.world`: :func:`build_demo_world`, cached by a manifest of hashes.

No Dagster here: the pipeline reads the world through its resources like any user's folders.
"""

from ml_core.demo_world.scale import FULL, REDUCED, SCALES, WorldScale
from ml_core.demo_world.tasks import SOURCE_TASKS, TARGET_TASKS, ImageTask
from ml_core.demo_world.world import (
    DATASET_CARD_NAME,
    DatasetCard,
    DemoWorld,
    DemoWorldError,
    DemoWorldManifest,
    build_demo_world,
    source_accuracies,
)
from ml_core.demo_world.zoo import EFFICIENTNET_NAME, DemoModelCard

__all__ = [
    "DATASET_CARD_NAME",
    "EFFICIENTNET_NAME",
    "FULL",
    "REDUCED",
    "SCALES",
    "SOURCE_TASKS",
    "TARGET_TASKS",
    "DatasetCard",
    "DemoModelCard",
    "DemoWorld",
    "DemoWorldError",
    "DemoWorldManifest",
    "ImageTask",
    "WorldScale",
    "build_demo_world",
    "source_accuracies",
]
