"""Asset jobs (one per partition dimension: Dagster infers each job's partitions from its assets) and the
partition-registration job."""

from dagster import AssetSelection, OpExecutionContext, define_asset_job, job, op

from pipelines.executors import step_retry_policy
from pipelines.registration import register_partitions

embed_models_job = define_asset_job(
    "embed_models",
    selection=AssetSelection.assets("model_parameters", "model_source_tokens", "model_embeddings"),
    op_retry_policy=step_retry_policy(),
    description="Flatten and embed models, and encode their source samples (one run per model partition).",
)
flatten_models_job = define_asset_job(
    "flatten_models",
    selection=AssetSelection.assets("model_parameters", "model_source_tokens"),
    op_retry_policy=step_retry_policy(),
    description="Flatten models into chunks and encode their source samples (one run per model partition); "
    "used before an autoencoder exists.",
)
dataset_tokens_job = define_asset_job(
    "dataset_tokens_job",
    selection=AssetSelection.assets("dataset_tokens", "transfer_performance"),
    op_retry_policy=step_retry_policy(),
    description="Encode a dataset's images into tokens and, when no performance table is configured, "
    "measure every model's transfer to it (one run per dataset partition).",
)
measure_transfer_job = define_asset_job(
    "measure_transfer",
    selection=AssetSelection.assets("transfer_performance"),
    op_retry_policy=step_retry_policy(),
    description="Measure transfer accuracy on a dataset (cell cache: after a new model only its cells run).",
)
train_job = define_asset_job(
    "train",
    selection=AssetSelection.assets("autoencoder", "ground_truth_ranks", "ranking_transformer"),
    op_retry_policy=step_retry_policy(),
    description="Train the autoencoder, rank the performance table, train the ranker (unpartitioned assets).",
)
recommend_job = define_asset_job(
    "recommend",
    selection=AssetSelection.assets("model_recommendations"),
    op_retry_policy=step_retry_policy(),
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


ALL_JOBS = [
    embed_models_job,
    flatten_models_job,
    dataset_tokens_job,
    measure_transfer_job,
    train_job,
    recommend_job,
    register_partitions_job,
]
