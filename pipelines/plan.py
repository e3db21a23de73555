"""Which asset partitions need a run: the plan behind a cached run that launches nothing.

A Dagster run costs about half a second to start even when the asset inside it is a cache hit, so a
graph of 155 partitions that changed nothing still spent a minute launching runs. Before launching,
the runner asks, for each partition, whether it is *fresh*:

1. Dagster has a materialization of the partition (``MISSING`` otherwise), recorded under the
   asset's current ``code_version`` (its ``dagster/code_version`` tag);
2. the artifact store's current pointer (``_refs``) exists and holds the content hash that Dagster
   recorded as the partition's data version (the instance and the store agree: a wiped or another
   store, or a half-done run, is not fresh);
3. the asset's own cache key, computed now from its config and the content of every input
   (upstream data versions, checkpoint and image-folder fingerprints, settings), is the key of that
   artifact: nothing it reads changed since.

Step 3 runs the asset's own body, invoked directly (no run, no event), up to the point where it
asks its cache (:func:`assets.shared.artifacts.materialize_asset`), and stops there
(:func:`assets.shared.artifacts.planning`): the key is the one a run would compute, by the same code, so
the plan cannot drift from the cache. Those inputs are fingerprints cached by (path, size, mtime), so
planning reads no file twice.

Why not Dagster's ``CachingStaleStatusResolver`` alone: it sees a change only in assets it knows
(the zoo's files, the image folders and the settings are resources, not assets), and it ignores a
dependency on 100 or more partitions of an upstream asset (``SKIP_PARTITION_DATA_VERSION_DEPENDENCY_
THRESHOLD``): the autoencoder reads every model, so past 100 models a new checkpoint would never
make it stale. The cache key has neither limit.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, AssetsDefinition, DagsterInstance, build_asset_context

from assets import ALL_ASSETS
from assets.shared.artifacts import Planned, current_artifact, current_ref, partition_artifacts, planning

logger = logging.getLogger(__name__)

FRESH = "fresh"


@dataclass(frozen=True)
class PartitionPlan:
    """What the runner does with one asset partition: ``run`` it (``reason`` says why) or skip it as
    fresh (``data_version``: what Dagster recorded, unchanged)."""

    asset: str
    partition: str | None
    run: bool
    reason: str
    data_version: str | None = None


def _dimension(assets_def: AssetsDefinition) -> str | None:
    partitions = assets_def.partitions_def
    return None if partitions is None else partitions.name


DIMENSIONS: dict[str, str | None] = {a.key.path[-1]: _dimension(a) for a in ALL_ASSETS}  # asset -> partitions


def latest_materializations(
    instance: DagsterInstance, asset: str, partitions: Sequence[str | None]
) -> dict[str | None, dict[str, str]]:
    """``{partition: tags}`` of the newest materialization of each partition (one query per partition
    for a partitioned asset, one for an unpartitioned one); partitions never materialized are absent."""
    key = AssetKey(asset)
    found: dict[str | None, dict[str, str]] = {}
    for partition in partitions:
        records_filter = key if partition is None else AssetRecordsFilter(asset_key=key, asset_partitions=[partition])
        result = instance.fetch_materializations(records_filter, limit=1)
        if result.records:
            materialization = result.records[0].asset_materialization
            found[partition] = dict(materialization.tags or {}) if materialization else {}
    return found


def _config_class(assets_def: AssetsDefinition) -> type | None:
    fn = assets_def.op.compute_fn.decorated_fn
    hints = typing.get_type_hints(fn)
    return hints.get("config") if "config" in inspect.signature(fn).parameters else None


def reads_all_partitions(assets_def: AssetsDefinition, input_name: str) -> bool:
    """Whether the input receives every upstream partition (:func:`assets.shared.artifacts.all_partitions`)."""
    return bool((assets_def.op.ins[input_name].metadata or {}).get("all_partitions"))


def _artifact_inputs(assets_def: AssetsDefinition) -> list[tuple[str, AssetKey]]:
    """``(input name, upstream key)`` of the inputs that are artifacts of the graph's assets; the observed
    source assets (the user's files) are read by the asset's own body through its resources."""
    return [(name, key) for name, key in assets_def.keys_by_input_name.items() if key.path[-1] in DIMENSIONS]


def single_inputs(assets_def: AssetsDefinition, partition: str | None) -> dict[str, tuple[str, str | None]]:
    """``{input name: (upstream asset, upstream partition)}`` of the inputs a partition reads alone: the
    same partition of a partitioned upstream asset, or an unpartitioned one."""
    out = {}
    for name, upstream_key in _artifact_inputs(assets_def):
        if not reads_all_partitions(assets_def, name):
            upstream = upstream_key.path[-1]
            out[name] = (upstream, partition if DIMENSIONS[upstream] is not None else None)
    return out


def _inputs(
    assets_def: AssetsDefinition, partition: str | None, registered: Mapping[str, Sequence[str]], store: Any
) -> dict[str, Any]:
    """The asset's inputs as the IO manager would load them (:class:`assets.shared.artifacts.ArtifactRefIOManager`):
    every registered (``registered``: ``{dimension: keys}``), materialized partition of an
    ``all_partitions`` input, else the same partition (or the unpartitioned artifact). Raises
    FileNotFoundError for a missing single input."""
    values: dict[str, Any] = {}
    for name, upstream_key in _artifact_inputs(assets_def):
        if reads_all_partitions(assets_def, name):
            upstream = upstream_key.path[-1]
            values[name], _ = partition_artifacts(store, upstream, registered[DIMENSIONS[upstream]])
    for name, (upstream, upstream_partition) in single_inputs(assets_def, partition).items():
        artifact = current_artifact(store, upstream, upstream_partition)
        if artifact is None and (assets_def.op.ins[name].metadata or {}).get("optional"):
            values[name] = None  # as the IO manager gives an optional input not materialized yet
            continue
        if artifact is None:
            raise FileNotFoundError(f"{upstream}[{upstream_partition or '-'}] is not materialized")
        values[name] = artifact
    return values


def planned_key(
    assets_def: AssetsDefinition,
    partition: str | None,
    *,
    resources: Mapping[str, Any],
    op_config: Mapping[str, Any] | None,
    registered: Mapping[str, Sequence[str]],
    instance: DagsterInstance | None = None,
) -> Planned:
    """The cache key a run of ``assets_def`` for ``partition`` would compute now: its body, invoked
    directly in planning mode, stopped at its cache lookup. ``instance``: the one the context reads
    (else Dagster makes an ephemeral one, with its database migrations, for each call)."""
    store = resources["store"]
    config_class = _config_class(assets_def)
    kwargs = _inputs(assets_def, partition, registered, store)
    if config_class is not None:
        kwargs["config"] = config_class(**dict(op_config or {}))
    needed = {key: resources[key] for key in assets_def.required_resource_keys if key in resources and key != "io_manager"}
    context = build_asset_context(partition_key=partition, resources=needed, instance=instance)
    with planning():
        try:
            outcome = assets_def(context, **kwargs)
            if inspect.isgenerator(outcome):
                for _ in outcome:
                    pass
        except Planned as planned:
            return planned
        finally:
            context.__exit__(None, None, None)
    raise RuntimeError(f"{assets_def.key.to_user_string()}: its body never reached materialize_asset")


def plan_stage(
    instance: DagsterInstance,
    assets_def: AssetsDefinition,
    partitions: Sequence[str | None],
    *,
    resources: Mapping[str, Any],
    op_config: Mapping[str, Any] | None,
    registered: Mapping[str, Sequence[str]],
) -> list[PartitionPlan]:
    """A :class:`PartitionPlan` for each partition of one asset (see the module docstring)."""
    asset = assets_def.key.path[-1]
    code_version = assets_def.code_versions_by_key[assets_def.key] or ""
    store = resources["store"]
    latest = latest_materializations(instance, asset, partitions)
    plans = []
    for partition in partitions:
        tags = latest.get(partition)
        if tags is None:
            plans.append(PartitionPlan(asset, partition, True, "never materialized on this instance"))
            continue
        if tags.get("dagster/code_version") != code_version:
            plans.append(PartitionPlan(asset, partition, True, "new code version"))
            continue
        version = tags.get("dagster/data_version")
        try:
            ref = current_ref(store, asset, partition)
        except ValueError as error:  # a corrupt pointer: a run rewrites it
            plans.append(PartitionPlan(asset, partition, True, str(error)))
            continue
        if ref is None or ref.content_hash != version:
            plans.append(PartitionPlan(asset, partition, True, "the artifact store does not hold what the instance recorded"))
            continue
        try:
            planned = planned_key(assets_def, partition, resources=resources, op_config=op_config,
                                  registered=registered, instance=instance)
        except Exception as error:  # the run will meet the same problem and report it properly
            logger.debug("planning %s[%s] failed: %s", asset, partition, error, exc_info=True)
            plans.append(PartitionPlan(asset, partition, True, f"could not plan: {type(error).__name__}: {error}"))
            continue
        if (planned.partition, planned.cache_key) != (ref.partition, ref.cache_key) or not planned.published:
            plans.append(PartitionPlan(asset, partition, True, "config or inputs changed"))
            continue
        plans.append(PartitionPlan(asset, partition, False, FRESH, version))
    return plans
