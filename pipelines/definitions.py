"""The Dagster code location: assets, resources, jobs, sensors, schedules. ``workspace.yaml`` loads ``defs``."""

import os

from dagster import Definitions

from assets import ALL_ASSETS, ALL_SOURCES
from assets.shared.artifacts import ArtifactRefIOManager
from pipelines.executors import executor_for
from pipelines.jobs import ALL_JOBS
from pipelines.schedules import ALL_SCHEDULES
from pipelines.sensors import ALL_SENSORS
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.dataset_catalog import DatasetCatalog
from resources.image_encoder import ImageEncoderResource
from resources.model_zoo import ModelZoo
from resources.performance_table import PerformanceTableResource
from resources.results_folder import ResultsFolder
from resources.settings import executor_kind
from worlds import World


def default_resources(store: ArtifactStore | None = None) -> dict[str, object]:
    """Resources configured from the environment (see ``resources/settings.py``)."""
    store = store or ArtifactStore()
    return {
        "store": store,
        "io_manager": ArtifactRefIOManager(store=store),
        "zoo": ModelZoo(),
        "catalog": DatasetCatalog(),
        "performance_table": PerformanceTableResource(),
        "results": ResultsFolder(),
        "image_encoder": ImageEncoderResource(),
        "compute": ComputeDevice(),
    }


def world_resources(world: World, store: ArtifactStore | None = None) -> dict[str, object]:
    """Resources pointing at a built-in world: its zoo, datasets and encoder; its performance
    table if it has one (the stand-in's), else none, so ``transfer_performance`` measures it (the
    demo scales)."""
    spec = world.encoder_spec
    return default_resources(store) | {
        "zoo": ModelZoo(root=str(world.zoo_dir)),
        "catalog": DatasetCatalog(root=str(world.datasets_dir)),
        "performance_table": PerformanceTableResource(path=str(world.table_path) if world.table_path else ""),
        "image_encoder": ImageEncoderResource(
            kind=spec.kind,
            architecture=spec.architecture,
            pretrained=spec.pretrained,
            model_config_file=spec.model_config_file,
            image_size=spec.image_size,
        ),
    }


def world_env(world: World, artifact_root: str | os.PathLike[str]) -> dict[str, str]:
    """:func:`world_resources` as environment variables (``resources/settings.py``'s), for the processes
    that build their resources from the environment: the Dagster CLI, the daemon, Celery workers."""
    spec = world.encoder_spec

    def text(value: object) -> str:
        return "" if value is None else str(value)

    return {
        "MODELREC_ARTIFACT_ROOT": str(artifact_root),
        "MODELREC_ZOO_DIR": str(world.zoo_dir),
        "MODELREC_DATASETS_DIR": str(world.datasets_dir),
        "MODELREC_PERFORMANCE_TABLE": text(world.table_path),
        "MODELREC_ENCODER_KIND": spec.kind,
        "MODELREC_ENCODER_ARCH": spec.architecture,
        "MODELREC_ENCODER_PRETRAINED": text(spec.pretrained),
        "MODELREC_ENCODER_CONFIG": text(spec.model_config_file),
        "MODELREC_ENCODER_IMAGE_SIZE": text(spec.image_size),
    }


def build_definitions(resources: dict[str, object] | None = None) -> Definitions:
    """The whole code location; ``resources`` defaults to the environment's settings, the jobs'
    executor to ``MODELREC_EXECUTOR`` (``pipelines/executors.py``)."""
    return Definitions(
        assets=[*ALL_SOURCES, *ALL_ASSETS],
        jobs=ALL_JOBS,
        sensors=ALL_SENSORS,
        schedules=ALL_SCHEDULES,
        resources=resources or default_resources(),
        executor=executor_for(executor_kind()),
    )


defs = build_definitions()
