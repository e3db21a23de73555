"""Dynamic partitions: one per model of the zoo, one per dataset; and how a backfill runs them.

They live beside the assets (which need them at definition time); ``pipelines`` re-exports
them. Keys come from :func:`ml_core.artifacts.naming.partition_key`.
"""

import warnings
from typing import Any

from dagster import BackfillPolicy, BetaWarning, DynamicPartitionsDefinition, asset

MODELS = "models"
DATASETS = "datasets"

models_partitions = DynamicPartitionsDefinition(name=MODELS)
datasets_partitions = DynamicPartitionsDefinition(name=DATASETS)


def asset_one_partition_per_run(**kwargs: Any) -> Any:
    """``@asset(**kwargs, backfill_policy=BackfillPolicy.multi_run(1))``: a backfill launches one run per
    partition (each partition's cache and failure stay its own).

    ``backfill_policy`` is a beta parameter in Dagster 1.13: each call that passes it prints a
    ``BetaWarning`` at import (``--help`` printed three). It is silenced here, around this one call only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        return asset(**kwargs, backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1))
