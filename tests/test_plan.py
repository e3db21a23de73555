"""The runner's plan: a fresh partition gets no run; anything that changed what it reads gets one.

The safety property behind every case: after a planned run, launching every partition anyway
(``plan=False``) rebuilds nothing and reports the same data versions, i.e. the plan never skipped a
partition that a run would have changed.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from PIL import Image

from ml_core.artifacts.fingerprints import folder_content_fingerprint, sha256_file
from pipelines.jobs import ALL_JOBS

from pipelines.runner import PartitionsFailed, materialize_all
from tests.pipeline_helpers import FAST_RUN_CONFIG, copy_world, resources_for, world_env


def _launched(records):
    return {(r.asset, r.partition) for r in records if r.launched}


def _versions(records):
    return {(r.asset, r.partition): r.data_version for r in records}


def _observed(instance, source: str, partition: str) -> str | None:
    """The data version of the newest observation of a source asset's partition."""
    found = instance.fetch_observations(AssetRecordsFilter(asset_key=AssetKey(source), asset_partitions=[partition]),
                                        limit=1).records
    return found[0].asset_observation.tags.get("dagster/data_version") if found else None


def _assert_nothing_skipped_wrongly(instance, resources, planned):
    forced = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG, plan=False)
    assert all(r.launched for r in forced)
    assert all(r.cache_hit for r in forced), [(r.asset, r.partition) for r in forced if not r.cache_hit]
    assert _versions(forced) == _versions(planned)


@pytest.fixture(scope="module")
def planned(tmp_path_factory, standin_world):
    root = tmp_path_factory.mktemp("plan")
    world = copy_world(standin_world, root / "world")  # this module changes an image
    resources = resources_for(world, root / "artifacts")
    (root / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(root / "dagster_home"))
    first = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG)
    yield {"world": world, "resources": resources, "instance": instance, "first": first, "root": root}
    instance.dispose()


def test_a_second_run_of_an_unchanged_graph_launches_nothing(planned):
    first = planned["first"]
    assert all(r.launched for r in first)
    second = materialize_all(planned["instance"], resources=planned["resources"], run_config=FAST_RUN_CONFIG)
    assert _launched(second) == set()
    assert _versions(second) == _versions(first)
    _assert_nothing_skipped_wrongly(planned["instance"], planned["resources"], second)


def test_runs_are_named_jobs_and_the_user_files_are_observed_by_content(planned):
    instance, world = planned["instance"], planned["world"]
    jobs = {run.job_name for run in instance.get_runs()}
    assert jobs and jobs <= {j.name for j in ALL_JOBS}, jobs  # the UI's Jobs page, not ephemeral asset jobs
    zoo = {e.key: e.path for e in planned["resources"]["zoo"].entries()}
    for model, path in zoo.items():
        assert _observed(instance, "model_checkpoints", model) == sha256_file(path)
    for dataset in world.dataset_names:
        folder = world.datasets_dir / dataset
        assert _observed(instance, "image_folders", dataset) == folder_content_fingerprint(folder)


def test_a_changed_config_launches_that_asset(planned):
    instance, resources = planned["instance"], planned["resources"]
    config = {"ops": {**FAST_RUN_CONFIG["ops"], "embedding_probes": {"config": {"n_folds": 3}}}}
    records = materialize_all(instance, resources=resources, run_config=config)
    assert _launched(records) == {("embedding_probes", None)}  # nothing reads the probes
    back = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG)
    assert _launched(back) == {("embedding_probes", None)}  # its pointer moved: back to the first artifact
    assert {r.cache_hit for r in back if r.launched} == {True}


def test_a_changed_image_launches_its_dataset_and_what_reads_it(planned):
    world, instance, resources = planned["world"], planned["instance"], planned["resources"]
    dataset = world.dataset_names[0]
    image = sorted((world.datasets_dir / dataset / "train").rglob("*.png"))[0]
    other = world.dataset_names[1]
    before = {d: _observed(instance, "image_folders", d) for d in (dataset, other)}
    with Image.open(image) as original:
        Image.eval(original.convert("RGB"), lambda v: 255 - v).save(image)  # same name, other content
    records = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG)
    # the run that re-encoded the dataset observed its folder's new content first; the other keeps its version
    assert _observed(instance, "image_folders", dataset) == folder_content_fingerprint(world.datasets_dir / dataset)
    assert _observed(instance, "image_folders", dataset) != before[dataset]
    assert _observed(instance, "image_folders", other) == before[other]
    launched = _launched(records)
    assert ("dataset_tokens", dataset) in launched
    assert not {(a, p) for a, p in launched if a == "dataset_tokens" and p != dataset}
    assert not {a for a, _ in launched} & {"model_parameters", "model_source_tokens", "autoencoder", "model_embeddings"}
    rebuilt = {(r.asset, r.partition) for r in records if not r.cache_hit}
    assert ("dataset_tokens", dataset) in rebuilt
    _assert_nothing_skipped_wrongly(instance, resources, records)


def test_a_fresh_instance_or_a_lost_pointer_launches_again(planned, tmp_path):
    resources = planned["resources"]
    (tmp_path / "home").mkdir()
    other = DagsterInstance.local_temp(str(tmp_path / "home"))  # the same store, a new instance
    try:
        records = materialize_all(other, resources=resources, run_config=FAST_RUN_CONFIG)
        assert all(r.launched and r.cache_hit for r in records)  # recorded on this instance, nothing rebuilt
    finally:
        other.dispose()
    instance = planned["instance"]
    model = planned["world"].model_names[0]
    store = resources["store"]
    ref = store.ref_path("model_embeddings", model)
    ref.unlink()  # the store no longer says which artifact is current
    records = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG)
    assert _launched(records) == {("model_embeddings", model)}
    assert ref.exists()
    shutil.rmtree(store.root_path / "model_parameters" / model)  # the artifact itself is gone
    store.ref_path("model_parameters", model).unlink()
    records = materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG)
    assert ("model_parameters", model) in _launched(records)
    assert {r.cache_hit for r in records if r.asset == "model_parameters" and r.partition == model} == {False}
    _assert_nothing_skipped_wrongly(instance, resources, records)


def test_a_bad_checkpoint_spoils_only_itself_and_the_command_says_so_in_one_line(planned, tmp_path):
    world, instance, resources = planned["world"], planned["instance"], planned["resources"]
    bad = world.zoo_dir / "aaa_empty.pt"  # first in every listing: the others come after it
    bad.write_bytes(b"")
    try:
        with pytest.raises(PartitionsFailed) as raised:
            materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG)
        failures = {(f.asset, f.partition): f.reason for f in raised.value.failures}
        assert set(failures) == {("model_parameters", "aaa_empty"), ("model_costs", "aaa_empty"),
                                 ("model_embeddings", "aaa_empty")}
        assert failures[("model_parameters", "aaa_empty")].startswith(f"CheckpointError: {bad}: ")
        assert failures[("model_costs", "aaa_empty")].startswith(f"CheckpointError: {bad}: ")
        assert "model_parameters[aaa_empty] failed" in failures[("model_embeddings", "aaa_empty")]
        done = {(r.asset, r.partition) for r in raised.value.records}
        for model in world.model_names:  # every good model went through, and so did every later stage
            assert {("model_parameters", model), ("model_embeddings", model)} <= done
        assert {("ranking_transformer", None), ("ranker_evaluation", None)} <= done

        config = tmp_path / "fast.json"
        config.write_text(json.dumps(FAST_RUN_CONFIG))
        env = {**os.environ, **world_env(world, resources["store"].root_path), "DAGSTER_HOME": str(tmp_path / "home")}
        command = [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=540,
                              cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 1, done.stderr[-2000:]
        assert f"model_parameters[aaa_empty]: CheckpointError: {bad}: not a readable torch checkpoint (the file is empty)" in done.stderr
        assert "Traceback" not in done.stderr and "Stack Trace" not in done.stderr  # one line, not Dagster's log
        assert "== " + world.dataset_names[0] in done.stdout  # the recommendations of the good models

        bad.unlink()  # the user removes the bad upload: the next run forgets it and succeeds
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=540,
                               cwd=Path(__file__).resolve().parents[1])
        assert again.returncode == 0, again.stderr[-2000:]
        assert "unregistered 1 models partition(s) no longer in the zoo: aaa_empty" in again.stdout
        assert "aaa_empty" not in again.stderr
    finally:
        bad.unlink(missing_ok=True)
        instance.delete_dynamic_partition("models", "aaa_empty")


def test_the_ranking_benchmark_reads_the_materialized_evaluation_only_if_its_config_matches(planned, capsys):
    import argparse

    import pandas as pd

    from benchmarks.ranking_quality import config_differences, run_world
    from pipelines.readers import materialized, materialized_evaluation

    store = planned["resources"]["store"]
    result, config = materialized_evaluation(store)
    saved = materialized(store, "ranker_evaluation").load()
    assert result.selected_variant == saved["selected_variant"] and config["models_folds"] == 2
    assert result.selected_all_pass == saved["selected_all_pass"] != ""  # every choice validation made, read back
    from dagster import AssetKey

    from pipelines.cli import print_evaluation

    event = planned["instance"].get_latest_materialization_event(AssetKey("ranker_evaluation"))
    metadata = event.asset_materialization.metadata
    assert metadata["best_all_pass"].value == result.selected_all_pass  # the UI names the bar a budget is paired against
    assert "family_best_all_pass_wtau" in metadata and "family_probe+logme+prior_wtau" in metadata
    print_evaluation(store)  # what `modelrec demo` prints after the run
    printed = capsys.readouterr().out
    assert f"best_all_pass = {result.selected_all_pass}" in printed and "| probe+logme+prior |" in printed
    summary = result.summary("test").reset_index(drop=True)
    pd.testing.assert_frame_equal(summary, pd.DataFrame(saved["summary"])[summary.columns], check_dtype=False)
    world = planned["world"]
    options = argparse.Namespace(store=str(store.root_path), datasets=str(world.datasets_dir), zoo=str(world.zoo_dir),
                                 seed=0, variants="default", models_folds=2, materialized=True)
    with pytest.raises(SystemExit, match=r"base\.model\.d_model: 16 != 64"):  # the tests' fast config is not the benchmark's
        run_world(options)
    assert config_differences({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 1, "c": 5}, "e": 0}) == ["a.c: 5 != 2"]
