"""Dynamic partitions: one per model of the zoo, one per dataset.

They live beside the assets (which need them at definition time); ``pipelines`` re-exports
them. Keys come from :func:`ml_core.artifacts.naming.partition_key`.
"""

from dagster import DynamicPartitionsDefinition

MODELS = "models"
DATASETS = "datasets"

models_partitions = DynamicPartitionsDefinition(name=MODELS)
datasets_partitions = DynamicPartitionsDefinition(name=DATASETS)
