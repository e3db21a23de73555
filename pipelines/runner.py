"""Materialize the whole graph in dependency order, partition by partition, on a Dagster instance.

This is what the main job command runs; the same assets, resources and IO manager as the UI.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance, materialize

from assets import ALL_ASSETS
from assets.partitions import DATASETS, MODELS
from pipelines.definitions import default_resources
from pipelines.registration import register_partitions

logger = logging.getLogger(__name__)

# (asset, partition dimension or None), in dependency order.
STAGES: tuple[tuple[str, str | None], ...] = (
    ("model_parameters", MODELS),
    ("model_source_tokens", MODELS),
    ("autoencoder", None),
    ("model_embeddings", MODELS),
    ("dataset_tokens", DATASETS),
    ("transfer_performance", DATASETS),
    ("ground_truth_ranks", None),
    ("embedding_probes", None),
    ("ranking_transformer", None),
    ("model_recommendations", DATASETS),
    ("transferability_scores", DATASETS),
    ("ranker_evaluation", None),
)


@dataclass(frozen=True)
class MaterializationRecord:
    asset: str
    partition: str | None
    cache_hit: bool
    data_version: str | None
    seconds: float


def _asset_run_config(run_config: Mapping[str, Any] | None, asset: str, log_level: str) -> dict[str, Any]:
    """The ``ops`` entry of ``asset`` (if any) plus the console log level."""
    ops = (run_config or {}).get("ops", {})
    config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if asset in ops:
        config["ops"] = {asset: ops[asset]}
    return config


def materialize_all(
    instance: DagsterInstance,
    *,
    resources: Mapping[str, Any] | None = None,
    run_config: Mapping[str, Any] | None = None,
    stages: Sequence[tuple[str, str | None]] = STAGES,
    log_level: str = "WARNING",
    only_partitions: Mapping[str, Sequence[str]] | None = None,
) -> list[MaterializationRecord]:
    """Register partitions, then materialize every stage (every partition); returns what happened.

    ``run_config`` is a Dagster run config whose ``ops`` entries are passed to the matching asset.
    ``only_partitions`` (``{"models": [...]}``) restricts a partition dimension to those keys.
    """
    resources = dict(resources or default_resources())
    registration = register_partitions(instance, resources["zoo"], resources["catalog"])
    logger.info(
        "partitions: %d models (%d new), %d datasets (%d new)",
        len(registration.models),
        len(registration.added_models),
        len(registration.datasets),
        len(registration.added_datasets),
    )
    records: list[MaterializationRecord] = []
    for asset, dimension in stages:
        keys: list[str | None] = [None] if dimension is None else sorted(instance.get_dynamic_partitions(dimension))
        if dimension is not None and only_partitions and dimension in only_partitions:
            keys = [k for k in keys if k in set(only_partitions[dimension])]
        for key in keys:
            result = materialize(
                ALL_ASSETS,
                selection=[asset],
                partition_key=key,
                instance=instance,
                resources=resources,
                run_config=_asset_run_config(run_config, asset, log_level),
                tags={"modelrec/stage": asset},
            )
            if not result.success:
                raise RuntimeError(f"materializing {asset}[{key or '-'}] failed")
            for event in result.get_asset_materialization_events():
                mat = event.materialization
                meta = mat.metadata
                records.append(
                    MaterializationRecord(
                        asset=asset,
                        partition=key,
                        cache_hit=bool(meta["cache_hit"].value) if "cache_hit" in meta else False,
                        data_version=mat.tags.get("dagster/data_version") if mat.tags else None,
                        seconds=float(meta["seconds"].value) if "seconds" in meta else 0.0,
                    )
                )
    return records
