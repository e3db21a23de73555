"""Asset jobs (one per partition dimension: Dagster infers each job's partitions from its assets) and the
partition-registration job.

Every asset belongs to at least one named job (:data:`JOB_OF_ASSET`): the runner (``modelrec run``), the
sensors and the schedule launch their runs under these names, so the UI's Jobs page lists them. The jobs that
read the user's files first observe them (the source assets ``model_checkpoints`` / ``image_folders`` /
``result_files``).
"""

from dagster import AssetSelection, OpExecutionContext, define_asset_job, job, op

from pipelines.executors import step_retry_policy
from pipelines.registration import register_partitions

embed_models_job = define_asset_job(
    "embed_models",
    selection=AssetSelection.assets("model_checkpoints", "model_parameters", "model_source_tokens", "model_embeddings",
                                    "model_costs"),
    op_retry_policy=step_retry_policy(),
    description="Observe a model's checkpoint, flatten and embed it, encode its source sample and measure its costs "
    "(one run per model partition).",
)
flatten_models_job = define_asset_job(
    "flatten_models",
    selection=AssetSelection.assets("model_checkpoints", "model_parameters", "model_source_tokens", "model_costs"),
    op_retry_policy=step_retry_policy(),
    description="Observe a model's checkpoint, flatten it into chunks, encode its source sample and measure its "
    "costs (one run per model partition); used before an autoencoder exists.",
)
dataset_tokens_job = define_asset_job(
    "dataset_tokens_job",
    selection=AssetSelection.assets("image_folders", "dataset_tokens", "transfer_performance"),
    op_retry_policy=step_retry_policy(),
    description="Observe a dataset's image folder, encode its images into tokens and, when no performance table "
    "is configured, measure every model's transfer to it (one run per dataset partition).",
)
measure_transfer_job = define_asset_job(
    "measure_transfer",
    selection=AssetSelection.assets("transfer_performance"),
    op_retry_policy=step_retry_policy(),
    description="Measure transfer accuracy on a dataset (cell cache: after a new model only its cells run).",
)
ingest_results_job = define_asset_job(
    "ingest_results",
    selection=AssetSelection.assets("result_files", "result_history"),
    op_retry_policy=step_retry_policy(),
    description="Observe the results folder, validate its new files and append them to the result history (requested by "
    "results_sensor). Retraining is a separate, deliberate step: the train job.",
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
score_transferability_job = define_asset_job(
    "score_transferability",
    selection=AssetSelection.assets("transferability_scores"),
    op_retry_policy=step_retry_policy(),
    description="LogME, H-score and a linear probe of every model on a dataset (one run per dataset partition; "
    "the baselines of the evaluation).",
)
evaluate_job = define_asset_job(
    "evaluate",
    selection=AssetSelection.assets("embedding_probes", "ranker_evaluation"),
    op_retry_policy=step_retry_policy(),
    description="What the model embeddings predict on held-out models, and the ranker on held-out dataset "
    "families against the priors and LogME (unpartitioned assets).",
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
    ingest_results_job,
    train_job,
    recommend_job,
    score_transferability_job,
    evaluate_job,
    register_partitions_job,
]

#: the named job each asset's runs are launched under by the runner (the first job selecting it, except that
#: the model stages run under ``embed_models``, which holds them all).
JOB_OF_ASSET: dict[str, str] = {
    "model_parameters": embed_models_job.name,
    "model_source_tokens": embed_models_job.name,
    "model_embeddings": embed_models_job.name,
    "model_costs": embed_models_job.name,
    "autoencoder": train_job.name,
    "result_history": ingest_results_job.name,
    "ground_truth_ranks": train_job.name,
    "ranking_transformer": train_job.name,
    "dataset_tokens": dataset_tokens_job.name,
    "transfer_performance": dataset_tokens_job.name,
    "model_recommendations": recommend_job.name,
    "transferability_scores": score_transferability_job.name,
    "embedding_probes": evaluate_job.name,
    "ranker_evaluation": evaluate_job.name,
}

#: the source asset a stage observes, in the same run, before it reads that partition's files.
OBSERVES: dict[str, str] = {
    "model_parameters": "model_checkpoints",
    "dataset_tokens": "image_folders",
    "result_history": "result_files",
}
