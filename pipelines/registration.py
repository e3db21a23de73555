"""Register the zoo's models and the catalog's datasets as dynamic partitions."""

from __future__ import annotations

from dataclasses import dataclass

from dagster import DagsterInstance

from assets.shared.partitions import DATASETS, MODELS
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo


@dataclass(frozen=True)
class Registration:
    added_models: list[str]
    added_datasets: list[str]
    models: list[str]
    datasets: list[str]


def register_partitions(instance: DagsterInstance, zoo: ModelZoo, catalog: DatasetCatalog) -> Registration:
    """Add a partition for every model and dataset not registered yet (existing ones untouched)."""
    models = [e.key for e in zoo.entries()]
    datasets = [e.key for e in catalog.entries()]
    known_models = set(instance.get_dynamic_partitions(MODELS))
    known_datasets = set(instance.get_dynamic_partitions(DATASETS))
    new_models = [k for k in models if k not in known_models]
    new_datasets = [k for k in datasets if k not in known_datasets]
    if new_models:
        instance.add_dynamic_partitions(MODELS, new_models)
    if new_datasets:
        instance.add_dynamic_partitions(DATASETS, new_datasets)
    return Registration(new_models, new_datasets, models, datasets)
