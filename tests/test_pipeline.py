"""The whole graph, in-process on a sqlite instance in a temporary folder and through the Dagster CLI."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterInstance
from dagster._core.instance.ref import InstanceRef

from assets.shared.artifacts import current_artifact
from ml_core.ranking import RecommendationConfig, budgeted_ranking
from pipelines.runner import STAGES, materialize_all
from tests.pipeline_helpers import FAST_RUN_CONFIG, resources_for, world_env

ASSETS = [asset for asset, _ in STAGES]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, standin_world):
    root = tmp_path_factory.mktemp("pipeline")
    world = standin_world
    resources = resources_for(world, root / "artifacts")
    (root / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(root / "dagster_home"))  # sqlite in a folder, like a user's
    first = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG)
    yield {"world": world, "resources": resources, "instance": instance, "first": first, "root": root}
    instance.dispose()


def test_every_asset_and_partition_materializes(pipeline_run):
    world, instance, first = pipeline_run["world"], pipeline_run["instance"], pipeline_run["first"]
    assert {r.asset for r in first} == set(ASSETS)
    n_models, n_datasets = len(world.model_names), len(world.dataset_names)
    counts = {a: sum(r.asset == a for r in first) for a in ASSETS}
    assert counts == {
        "model_parameters": n_models,
        "model_costs": n_models,
        "model_source_tokens": n_models,  # the stand-in's cards name no sample: empty, neutral artifacts
        "autoencoder": 1,
        "model_embeddings": n_models,
        "dataset_tokens": n_datasets,
        "transfer_performance": n_datasets,  # skipped: the stand-in world brings its own table
        "result_history": 1,  # empty: no result reported
        "ground_truth_ranks": 1,
        "embedding_probes": 1,
        "ranking_transformer": 1,
        "model_recommendations": n_datasets,
        "transferability_scores": n_datasets,
        "ranker_evaluation": 1,
    }
    assert not any(r.cache_hit for r in first if r.asset != "model_source_tokens")
    # the stand-in's cards name no sample: one shared empty artifact, built once, found by the others
    assert sum(not r.cache_hit for r in first if r.asset == "model_source_tokens") == 1
    for asset in ASSETS:
        assert instance.get_latest_materialization_event(AssetKey(asset)) is not None
    # each partitioned asset is materialized for every registered partition
    assert sorted(instance.get_dynamic_partitions("models")) == sorted(world.model_names)


def test_recommendations_rank_the_whole_zoo(pipeline_run):
    store = pipeline_run["resources"]["store"]
    world = pipeline_run["world"]
    for dataset in world.dataset_names:
        table = current_artifact(store, "model_recommendations", dataset).load()
        assert sorted(table["model"]) == sorted(world.model_names)
        assert list(table["rank"]) == sorted(table["rank"])  # best first
        assert table["score"].is_monotonic_decreasing
        assert np.isfinite(table["score"]).all()
        measured = json.loads(world.table_path.read_text())[dataset]
        truth = {r["model_name"]: r["accuracy"] for r in measured}
        assert np.allclose(table.set_index("model")["accuracy"].loc[list(truth)], list(truth.values()))
        # the two-stage shortlist: a third of the zoo, led by the ranker's own top picks
        k = max(1, len(world.model_names) // 3)
        assert table["shortlist"].sum() == k and table["shortlist"].iloc[: k // 2].all()


def test_second_run_is_all_cache_hits_with_same_versions(pipeline_run):
    first = pipeline_run["first"]
    second = materialize_all(
        pipeline_run["instance"], resources=pipeline_run["resources"], run_config=FAST_RUN_CONFIG
    )
    assert len(second) == len(first)
    assert all(r.cache_hit for r in second), [r for r in second if not r.cache_hit]
    versions = {(r.asset, r.partition): r.data_version for r in first}
    assert {(r.asset, r.partition): r.data_version for r in second} == versions
    assert all(v for v in versions.values())


def test_config_change_rebuilds_only_that_asset_and_downstream(pipeline_run):
    def ranker_version(records):
        return next(r.data_version for r in records if r.asset == "ranking_transformer")

    instance, resources, first = pipeline_run["instance"], pipeline_run["resources"], pipeline_run["first"]
    config = json.loads(json.dumps(FAST_RUN_CONFIG))
    config["ops"]["ranking_transformer"]["config"]["seed"] = 1
    records = materialize_all(instance, resources=resources, run_config=config)
    rebuilt = {r.asset for r in records if not r.cache_hit}
    assert "ranking_transformer" in rebuilt and rebuilt <= {"ranking_transformer", "model_recommendations"}
    # content-addressed: downstream rebuilds exactly when the retrained ranker's bytes changed (the linear
    # ranker may early-stop at its deterministic start, whatever the seed)
    assert ("model_recommendations" in rebuilt) == (ranker_version(records) != ranker_version(first))
    training = config["ops"]["ranking_transformer"]["config"]["training"]
    training["model"]["architecture"] = "cross_attention"
    training["trainer"]["lr"] = 1e-3
    records = materialize_all(instance, resources=resources, run_config=config)
    assert ranker_version(records) != ranker_version(first)  # another architecture: other bytes
    assert {r.asset for r in records if not r.cache_hit} == {"ranking_transformer", "model_recommendations"}
    back = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG)
    assert all(r.cache_hit for r in back)  # the original config's artifacts are still there


def test_asset_checks_pass(pipeline_run):
    instance = pipeline_run["instance"]
    for asset, check in [
        ("model_parameters", "finite_values"),
        ("model_embeddings", "finite_embedding"),
        ("dataset_tokens", "enough_valid_images"),
        ("model_recommendations", "every_model_ranked"),
        ("ground_truth_ranks", "every_table_name_known"),
        ("ranking_transformer", "validation_metric_finite"),
    ]:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [AssetCheckKey(AssetKey(asset), check)]
        )[AssetCheckKey(AssetKey(asset), check)]
        assert record.status.value == "SUCCEEDED", (asset, check)
        evaluation = record.event.dagster_event.event_specific_data
        assert evaluation.passed, (asset, check)


def _cli(args, env, cwd):
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240
    )


@pytest.mark.slow  # Dagster CLI subprocesses
def test_dagster_cli_materializes_the_same_versions(pipeline_run, tmp_path):
    """`dagster asset materialize` on a persistent DAGSTER_HOME gives the in-process data versions."""
    world = pipeline_run["world"]
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = os.environ | world_env(world, tmp_path / "cli_artifacts") | {"DAGSTER_HOME": str(home)}
    repo = Path(__file__).resolve().parents[1]
    registered = _cli(["pipelines.cli", "register"], env, repo)
    assert registered.returncode == 0, registered.stderr[-2000:]
    model = world.model_names[0]
    for select, partition in (("model_parameters", model), ("ground_truth_ranks", None)):
        args = ["dagster", "asset", "materialize", "-m", "pipelines.definitions", "--select", select]
        if partition:
            args += ["--partition", partition]
        done = _cli(args, env, repo)
        assert done.returncode == 0, done.stderr[-3000:]
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    versions = {(r.asset, r.partition): r.data_version for r in pipeline_run["first"]}
    for asset, partition in (("model_parameters", model), ("ground_truth_ranks", None)):
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition] if partition else None), limit=1
        ).records
        assert records, (asset, partition)
        tags = records[0].asset_materialization.tags
        assert tags["dagster/data_version"] == versions[(asset, partition)]


def test_each_checkpoint_and_dataset_is_hashed_once_per_content(standin_world, tmp_path, monkeypatch):
    """Every dataset partition's column reads every checkpoint: its fingerprint is computed once, then
    found (in the process, and in the store's records for the next process)."""
    import ml_core.artifacts.fingerprints as fingerprints

    hashed = []
    real = fingerprints.sha256_file
    monkeypatch.setattr(fingerprints, "sha256_file", lambda path, *a, **k: hashed.append(str(path)) or real(path, *a, **k))
    resources = resources_for(standin_world, tmp_path / "artifacts")
    instance = DagsterInstance.ephemeral()
    stages = [("transferability_scores", "datasets")]
    records = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG, stages=stages)
    assert len(records) == len(standin_world.dataset_names) == 4
    checkpoints = [h for h in hashed if "/zoo/" in h]
    assert sorted(checkpoints) == sorted(set(checkpoints)) and len(checkpoints) == len(standin_world.model_names)
    images = [h for h in hashed if "/datasets/" in h]
    assert len(images) == len(set(images))  # each image once, for its dataset's fingerprint
    hashed.clear()
    fingerprints_dir = tmp_path / "artifacts" / "_fingerprints"
    assert len(list(fingerprints_dir.glob("file-*.json"))) == len(standin_world.model_names)
    assert len(list(fingerprints_dir.glob("folder-*.json"))) == len(standin_world.dataset_names)
    from resources.artifact_store import _FINGERPRINT_CACHES

    _FINGERPRINT_CACHES.clear()  # a new process: only the store's records remain
    again = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG, stages=stages)
    assert all(r.cache_hit for r in again) and not hashed  # nothing read again


def test_a_budget_of_forward_passes_measures_k_models_once_and_shares_the_scored_cells(pipeline_run, monkeypatch):
    import shutil

    import assets.shared.transferability_cells as cells_module

    world, instance, resources = pipeline_run["world"], pipeline_run["instance"], pipeline_run["resources"]
    store = resources["store"]
    config = json.loads(json.dumps(FAST_RUN_CONFIG))
    config["ops"]["model_recommendations"] = {"config": {"forward_passes": 3}}
    stages = [("model_recommendations", "datasets")]
    scored, unscored = world.dataset_names[:2]
    import ml_core.ground_truth.features as features_module

    calls = []  # one per forward pass of a model over a dataset's scored images
    real = features_module.zoo_model_runner
    monkeypatch.setattr(features_module, "zoo_model_runner", lambda cell: calls.append(cell.key) or real(cell))
    # 1. transferability_scores has scored every cell of this dataset: the budget runs no model
    records = materialize_all(instance, resources=resources, run_config=config, stages=stages,
                              only_partitions={"datasets": [scored]})
    assert [r.cache_hit for r in records] == [False] and calls == []
    table = current_artifact(store, "model_recommendations", scored).load()
    measured = table[table["measured"] >= 0].sort_values("measured")
    assert len(measured) == 3 and set(table.loc[table["measured"] < 0, "measured_value"].isna()) == {True}
    probes = current_artifact(store, "transferability_scores", scored).load()["scores"]
    assert measured["measured_value"].tolist() == pytest.approx([probes[m]["probe"] for m in measured["model"]])
    summary = current_artifact(store, "model_recommendations", scored).summary()
    assert summary["ranking"] == "budget of 3 passes (probe)" and sorted(summary["measured"]) == sorted(measured["model"])
    assert {"ranker", "budget"} <= set(summary)  # a labelled dataset: both rankings' metrics, side by side
    plain = current_artifact(store, "model_recommendations", world.dataset_names[2]).load()
    assert "measured" not in plain  # without a budget, the table is the ranker's, as before
    # 1b. the other rule a user can pick: uncertainty sampling measures what the ranker's history knows least
    uncertain = json.loads(json.dumps(config))
    uncertain["ops"]["model_recommendations"]["config"]["budget_selection"] = "uncertainty"
    records = materialize_all(instance, resources=resources, run_config=uncertain, stages=stages,
                              only_partitions={"datasets": [scored]})
    assert [r.cache_hit for r in records] == [False] and calls == []  # another config; the cells are cached
    picked = current_artifact(store, "model_recommendations", scored).load()
    picked = picked[picked["measured"] >= 0].sort_values("measured")["model"].tolist()
    models = sorted(table["model"])
    history = current_artifact(store, "ranking_transformer", None).load().history(models)
    rule = dataclasses.replace(RecommendationConfig(forward_passes=3).budget(), selection="uncertainty")
    expected = budgeted_ranking(history, lambda j: probes[models[j]]["probe"], rule)
    assert picked == [models[j] for j in expected.measured] and len(picked) == 3
    default = budgeted_ranking(history, lambda j: probes[models[j]]["probe"], RecommendationConfig(forward_passes=3).budget())
    assert picked != [models[j] for j in default.measured]  # the rule reached the asset: expected gain picks others
    # 1c. both proxies of each pass (probe and LogME from the same cached features): no forward pass either
    both = json.loads(json.dumps(config))
    both["ops"]["model_recommendations"]["config"].update(budget_proxy="probe+logme", forward_passes=len(models))
    records = materialize_all(instance, resources=resources, run_config=both, stages=stages,
                              only_partitions={"datasets": [scored]})
    assert [r.cache_hit for r in records] == [False] and calls == []
    ranked = current_artifact(store, "model_recommendations", scored).load().set_index("model")
    rule = RecommendationConfig(forward_passes=len(models), budget_proxy="probe+logme").budget()
    assert rule.second_weight > 0
    expected = budgeted_ranking(history, lambda j: (probes[models[j]]["probe"], probes[models[j]]["logme"]), rule)
    np.testing.assert_allclose(ranked.loc[models, "score"], expected.scores)  # the ranking is the two-proxy one
    got = ranked[ranked["measured"] >= 0].sort_values("measured")
    assert got.index.tolist() == [models[j] for j in expected.measured]
    assert got["measured_value"].tolist() == pytest.approx([probes[m]["probe"] for m in got.index])  # the probe's
    probe_only = budgeted_ranking(history, lambda j: probes[models[j]]["probe"],
                                  RecommendationConfig(forward_passes=len(models)).budget())
    assert not np.allclose(expected.scores, probe_only.scores)  # LogME changed the ranking (every model measured)
    # 2. a dataset whose cells were never scored: exactly k forward passes, with the same results
    cell_dir = store.root_path / cells_module.CELL_ASSET / unscored
    features_dir = store.root_path / features_module.FEATURES_ASSET / unscored
    moved = pipeline_run["root"] / "cells_aside"
    shutil.move(str(cell_dir), str(moved))
    shutil.move(str(features_dir), str(pipeline_run["root"] / "features_aside"))
    try:
        materialize_all(instance, resources=resources, run_config=config, stages=stages,
                        only_partitions={"datasets": [unscored]})
        assert len(calls) == 3 and len(set(calls)) == 3
        table = current_artifact(store, "model_recommendations", unscored).load()
        probes = current_artifact(store, "transferability_scores", unscored).load()["scores"]
        chosen = table[table["measured"] >= 0]
        assert sorted(chosen["model"]) == sorted(calls)
        assert chosen["measured_value"].tolist() == pytest.approx([probes[m]["probe"] for m in chosen["model"]])
        # 3. the same budget again: a cache hit, nothing is measured
        again = materialize_all(instance, resources=resources, run_config=config, stages=stages,
                                only_partitions={"datasets": [unscored]})
        assert [r.cache_hit for r in again] == [True] and len(calls) == 3
    finally:
        shutil.rmtree(cell_dir, ignore_errors=True)
        shutil.move(str(moved), str(cell_dir))
        shutil.rmtree(features_dir, ignore_errors=True)
        shutil.move(str(pipeline_run["root"] / "features_aside"), str(features_dir))
    back = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG, stages=stages,
                           only_partitions={"datasets": [scored, unscored]})
    assert all(r.cache_hit for r in back)  # the budget-free tables are still there
