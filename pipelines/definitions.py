"""The Dagster code location: assets, resources, jobs. ``dagster dev -w workspace.yaml`` loads ``defs``."""

from dagster import AssetSelection, Definitions, OpExecutionContext, define_asset_job, job, op

from assets import ALL_ASSETS
from assets.artifacts import ArtifactRefIOManager
from assets.partitions import datasets_partitions, models_partitions
from ml_core.fixture_world import FixtureWorld
from pipelines.registration import register_partitions
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.dataset_catalog import DatasetCatalog
from resources.image_encoder import ImageEncoderResource
from resources.model_zoo import ModelZoo
from resources.performance_table import PerformanceTableResource


def default_resources(store: ArtifactStore | None = None) -> dict[str, object]:
    """Resources configured from the environment (see ``resources/settings.py``)."""
    store = store or ArtifactStore()
    return {
        "store": store,
        "artifact_io_manager": ArtifactRefIOManager(store=store),
        "zoo": ModelZoo(),
        "catalog": DatasetCatalog(),
        "performance_table": PerformanceTableResource(),
        "image_encoder": ImageEncoderResource(),
        "compute": ComputeDevice(),
    }


def world_resources(world: FixtureWorld, store: ArtifactStore | None = None) -> dict[str, object]:
    """Resources pointing at a generated world (zoo, datasets, table, stand-in encoder)."""
    spec = world.encoder_spec
    return default_resources(store) | {
        "zoo": ModelZoo(root=str(world.zoo_dir)),
        "catalog": DatasetCatalog(root=str(world.datasets_dir)),
        "performance_table": PerformanceTableResource(path=str(world.table_path)),
        "image_encoder": ImageEncoderResource(
            architecture=spec.architecture, pretrained=spec.pretrained, model_config_file=spec.model_config_file
        ),
    }


embed_models_job = define_asset_job(
    "embed_models",
    selection=AssetSelection.assets("model_parameters", "model_embeddings"),
    partitions_def=models_partitions,
    description="Flatten and embed models (one run per model partition).",
)
flatten_models_job = define_asset_job(
    "flatten_models",
    selection=AssetSelection.assets("model_parameters"),
    partitions_def=models_partitions,
    description="Flatten models into chunks (one run per model partition).",
)
dataset_tokens_job = define_asset_job(
    "dataset_tokens_job",
    selection=AssetSelection.assets("dataset_tokens"),
    partitions_def=datasets_partitions,
    description="Encode a dataset's images into tokens (one run per dataset partition).",
)
train_job = define_asset_job(
    "train",
    selection=AssetSelection.assets("autoencoder", "ground_truth_ranks", "ranking_transformer"),
    description="Train the autoencoder, rank the performance table, train the ranker (unpartitioned assets).",
)
recommend_job = define_asset_job(
    "recommend",
    selection=AssetSelection.assets("model_recommendations"),
    partitions_def=datasets_partitions,
    description="Rank the zoo for a dataset (one run per dataset partition).",
)


@op(required_resource_keys={"zoo", "catalog"})
def register_zoo_and_datasets(context: OpExecutionContext) -> None:
    """Add a dynamic partition for every model file and dataset folder not registered yet."""
    result = register_partitions(context.instance, context.resources.zoo, context.resources.catalog)
    context.log.info(
        f"registered {len(result.added_models)} new model(s) {result.added_models} and "
        f"{len(result.added_datasets)} new dataset(s) {result.added_datasets}"
    )


@job(description="Register every model of the zoo and every dataset folder as a partition.")
def register_partitions_job() -> None:
    register_zoo_and_datasets()


defs = Definitions(
    assets=ALL_ASSETS,
    jobs=[embed_models_job, flatten_models_job, dataset_tokens_job, train_job, recommend_job, register_partitions_job],
    resources=default_resources(),
)
