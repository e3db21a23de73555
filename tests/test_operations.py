"""Operations: the new-model sensor, the re-embedding schedule, automation of recommendations."""

import os
import time

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)
from safetensors.torch import load_file, save_file

from assets import ALL_ASSETS
from pipelines.definitions import build_definitions
from pipelines.runner import STAGES, materialize_all
from pipelines.schedules import reembed_stale_models
from pipelines.sensors import dataset_catalog_sensor, model_zoo_sensor
from tests.pipeline_helpers import FAST_RUN_CONFIG, copy_world, resources_for


@pytest.fixture(scope="module")
def ops(tmp_path_factory, standin_world):
    root = tmp_path_factory.mktemp("ops")
    world = copy_world(standin_world, root / "world")  # this module adds and replaces files
    resources = resources_for(world, root / "artifacts")
    # a real sqlite instance in a folder (schedules need its ref); unlike instance_for_test it sets
    # no process-wide state that would outlive this module
    (root / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(root / "dagster_home"))
    serving_stages = [s for s in STAGES if s[0] not in ("transferability_scores", "ranker_evaluation", "embedding_probes")]
    materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG, stages=serving_stages)
    yield {"world": world, "resources": resources, "instance": instance, "defs": build_definitions(resources)}
    instance.dispose()


def _latest_storage_ids(instance, asset, keys):
    ids = {}
    for key in keys:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[key]), limit=1
        ).records
        ids[key] = records[0].storage_id if records else None
    return ids


def _tick(sensor, instance, resources, cursor):
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor(context)


def _apply_partitions(instance, result):
    for request in result.dynamic_partitions_requests:
        if type(request).__name__.startswith("Add"):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def _perturbed_copy(source, target, scale):
    tensors = {k: (v * scale if v.dtype.is_floating_point else v) for k, v in load_file(source).items()}
    save_file(tensors, target)


def test_new_checkpoint_gets_a_partition_and_only_its_own_run(ops):
    instance, resources, defs, world = ops["instance"], ops["resources"], ops["defs"], ops["world"]
    zoo_resources = {"zoo": resources["zoo"], "store": resources["store"]}
    first = _tick(model_zoo_sensor, instance, zoo_resources, None)
    assert not first.run_requests and not first.dynamic_partitions_requests  # all registered already
    others = list(world.model_names)
    per_model = ("model_parameters", "model_source_tokens", "model_embeddings", "model_costs")
    before = {a: _latest_storage_ids(instance, a, others) for a in per_model}
    automation_cursor = evaluate_automation_conditions(defs, instance).cursor

    _perturbed_copy(world.zoo_dir / "smallcnn_shapes.safetensors", world.zoo_dir / "smallcnn_shapes_v2.safetensors", 1.1)
    tick = _tick(model_zoo_sensor, instance, zoo_resources, first.cursor)
    assert [r.partition_key for r in tick.run_requests] == ["smallcnn_shapes_v2"]
    assert tick.run_requests[0].job_name == "embed_models"
    assert list(tick.dynamic_partitions_requests[0].partition_keys) == ["smallcnn_shapes_v2"]
    _apply_partitions(instance, tick)
    run = defs.get_job_def("embed_models").execute_in_process(partition_key="smallcnn_shapes_v2", instance=instance)
    done = {(e.asset_key.path[-1], e.partition) for e in run.get_asset_materialization_events()}
    assert done == {(a, "smallcnn_shapes_v2") for a in per_model}
    after = {a: _latest_storage_ids(instance, a, others) for a in per_model}
    assert after == before  # no other model was touched

    # the same tick again requests nothing; the recommendations of every dataset now want a refresh
    assert not _tick(model_zoo_sensor, instance, zoo_resources, tick.cursor).run_requests
    automation = evaluate_automation_conditions(defs, instance, cursor=automation_cursor)
    wanted = automation.get_requested_partitions(AssetKey("model_recommendations"))
    assert wanted == set(world.dataset_names)
    ops["cursor"] = tick.cursor


def test_replaced_touched_and_removed_checkpoints(ops):
    instance, resources, defs, world = ops["instance"], ops["resources"], ops["defs"], ops["world"]
    zoo_resources = {"zoo": resources["zoo"], "store": resources["store"]}
    cursor = ops.get("cursor") or _tick(model_zoo_sensor, instance, zoo_resources, None).cursor
    path = world.zoo_dir / "depthwisenet_shapes.safetensors"
    job = defs.get_job_def("embed_models")

    os.utime(path, ns=(time.time_ns(), time.time_ns()))  # touched, same bytes: no run at all
    tick = _tick(model_zoo_sensor, instance, zoo_resources, cursor)
    assert not tick.run_requests
    run = job.execute_in_process(partition_key="depthwisenet_shapes", instance=instance)  # had it run: cache hits
    hits = {e.asset_key.path[-1]: e.materialization.metadata["cache_hit"].value for e in run.get_asset_materialization_events()}
    assert hits == {"model_parameters": True, "model_source_tokens": True, "model_embeddings": True, "model_costs": True}

    _perturbed_copy(path, path, 0.5)  # replaced with other weights: recomputed
    tick = _tick(model_zoo_sensor, instance, zoo_resources, tick.cursor)
    assert [r.partition_key for r in tick.run_requests] == ["depthwisenet_shapes"]
    run = job.execute_in_process(partition_key="depthwisenet_shapes", instance=instance)
    hits = {e.asset_key.path[-1]: e.materialization.metadata["cache_hit"].value for e in run.get_asset_materialization_events()}
    # new weights, same card: the source sample's tokens do not depend on the weights and stay cached
    assert hits == {"model_parameters": False, "model_source_tokens": True, "model_embeddings": False,
                    "model_costs": False}

    path.unlink()  # removed: its partition is dropped on purpose
    tick = _tick(model_zoo_sensor, instance, zoo_resources, tick.cursor)
    assert not tick.run_requests
    assert [list(r.partition_keys) for r in tick.dynamic_partitions_requests] == [["depthwisenet_shapes"]]
    _apply_partitions(instance, tick)
    assert "depthwisenet_shapes" not in instance.get_dynamic_partitions("models")


def test_schedule_requests_exactly_the_stale_embeddings(ops):
    instance, resources, defs = ops["instance"], ops["resources"], ops["defs"]
    models = sorted(instance.get_dynamic_partitions("models"))
    context = build_schedule_context(instance=instance, resources={"store": resources["store"]})
    assert not isinstance(reembed_stale_models(context), list)  # nothing stale yet: a SkipReason

    fast = FAST_RUN_CONFIG["ops"]["autoencoder"]["config"]
    config = {"ops": {"autoencoder": {"config": {**fast, "tokens": {**fast["tokens"], "seed": 7}}}}}
    retrained = materialize(ALL_ASSETS, selection=["autoencoder"], instance=instance, resources=resources, run_config=config)
    assert retrained.success
    requests = reembed_stale_models(build_schedule_context(instance=instance, resources={"store": resources["store"]}))
    assert sorted(r.partition_key for r in requests) == models
    assert {r.tags["modelrec/reason"] for r in requests} == {"autoencoder retrained"}

    # Dagster sees the same: every embedding is now unsynced (stale) in the UI
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))
    assert {resolver.get_status(AssetKey("model_embeddings"), k) for k in models} == {StaleStatus.STALE}

    defs.get_job_def("embed_models").execute_in_process(partition_key=models[0], instance=instance)
    requests = reembed_stale_models(build_schedule_context(instance=instance, resources={"store": resources["store"]}))
    assert sorted(r.partition_key for r in requests) == models[1:]


def test_dataset_sensor_registers_new_folders(ops, tmp_path):
    instance, resources, world = ops["instance"], ops["resources"], ops["world"]
    catalog = {"catalog": resources["catalog"]}
    first = _tick(dataset_catalog_sensor, instance, catalog, None)
    assert not first.run_requests
    import shutil

    shutil.copytree(world.datasets_dir / "colour_blobs", world.datasets_dir / "colour blobs copy")
    tick = _tick(dataset_catalog_sensor, instance, catalog, first.cursor)
    (added,) = [r.partition_key for r in tick.run_requests]
    assert added.startswith("colour-blobs-copy-") and tick.run_requests[0].job_name is None
    shutil.rmtree(world.datasets_dir / "colour blobs copy")
