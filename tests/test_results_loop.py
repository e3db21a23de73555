"""The shortlist -> fine-tune -> report loop, end to end on the STAND-IN world (stand-in models, a
probe-measured table given as the user's, a random CLIP-like encoder: not real figures).

A results file dropped in the results folder -> ``results_sensor`` requests an ``ingest_results`` run ->
new rows in ``result_history`` -> ``ground_truth_ranks`` gets a new data version (nothing retrains on its
own) -> ``ranking_transformer`` materialized again -> the dataset's ranking moves toward the result.
Then what is refused (malformed files, whole, nothing appended), what is not appended twice (the same
content again), conflicting results (averaged, both reported), and the "why" columns of a ranking.
"""

import json
import os
import shutil
import time

import numpy as np
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, build_sensor_context, evaluate_automation_conditions

from assets.shared.artifacts import current_artifact
from ml_core.ground_truth import load_performance_table
from ml_core.images import dataset_descriptor
from pipelines.cli import print_folder_recommendation
from pipelines.definitions import build_definitions
from pipelines.folder_recommendation import recommend_folder
from pipelines.runner import STAGES, materialize_all
from pipelines.sensors import results_sensor
from resources.results_folder import FileChangedWhileRead, ResultsFolder
from tests.pipeline_helpers import FAST_RUN_CONFIG, copy_world, resources_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SERVING = [s for s in STAGES if s[0] not in ("transferability_scores", "ranker_evaluation", "embedding_probes")]
RETRAIN = [("ground_truth_ranks", None), ("ranking_transformer", None), ("model_recommendations", "datasets")]


@pytest.fixture(scope="module")
def loop(tmp_path_factory, standin_world):
    root = tmp_path_factory.mktemp("results_loop")
    world = copy_world(standin_world, root / "world")
    results = root / "results"
    resources = resources_for(world, root / "artifacts") | {"results": ResultsFolder(root=str(results), settle_seconds=0)}
    (root / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(root / "dagster_home"))
    materialize_all(instance, resources=resources, run_config=FAST_RUN_CONFIG, stages=SERVING)
    yield {"world": world, "resources": resources, "instance": instance, "results": results,
           "defs": build_definitions(resources), "store": resources["store"]}
    instance.dispose()


def _tick(state):
    context = build_sensor_context(instance=state["instance"], cursor=state.get("cursor"),
                                   resources={"results": state["resources"]["results"]})
    result = results_sensor(context)
    state["cursor"] = result.cursor
    return result


def _ingest(state):
    """A sensor tick that must request one run, and that run (the job the sensor names)."""
    tick = _tick(state)
    [request] = tick.run_requests
    job = state["defs"].resolve_job_def("ingest_results")
    assert request.job_name in (None, job.name)
    run = job.execute_in_process(instance=state["instance"], tags=request.tags)
    assert run.success
    [event] = run.get_asset_materialization_events()
    return run, {k: v.value for k, v in event.materialization.metadata.items()}


def _data_version(instance, asset):
    event = instance.get_latest_materialization_event(AssetKey(asset))
    return event.asset_materialization.tags["dagster/data_version"]


def _recommendations(store, dataset):
    return current_artifact(store, "model_recommendations", dataset).load()


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # written beside, then moved in: the sensor never sees half a file
    tmp.write_text("dataset,model,accuracy\n" + "".join(f"{d},{m},{a}\n" for d, m, a in rows))
    tmp.rename(path)


def test_why_columns_name_the_nearest_training_datasets_by_the_rankers_similarity(loop):
    store, world = loop["store"], loop["world"]
    ranker = current_artifact(store, "ranking_transformer", None).load()
    train = [d for d, split in ranker.info["splits"].items() if split == "train"]
    assert train == ranker.reference.dataset_names
    descriptors = {d: dataset_descriptor(current_artifact(store, "dataset_tokens", d).load())
                   for d in world.dataset_names}
    for dataset in world.dataset_names:
        table = _recommendations(store, dataset)
        assert {"nearest_datasets", "nearest_score", "source_similarity", "prior_score"} <= set(table.columns)
        sims = {d: float(descriptors[d] @ descriptors[dataset]) for d in train}  # cosine: unit descriptors
        expected = sorted(train, key=lambda d: -sims[d])[: ranker.reference.k]
        assert table["nearest_datasets"].nunique() == 1
        assert table["nearest_datasets"].iloc[0] == ", ".join(f"{d} ({sims[d]:.3f})" for d in expected)
        if dataset in train:  # a training dataset is its own nearest
            assert expected[0] == dataset and sims[dataset] == pytest.approx(1.0)
        assert table["source_similarity"].isna().all()  # the stand-in's cards name no source sample
        assert table["nearest_score"].between(0, 1).all()
    event = loop["instance"].get_latest_materialization_event(AssetKey("model_recommendations"))
    shown = event.asset_materialization.metadata["nearest_training_datasets"].value  # the UI says it once
    assert shown == _recommendations(store, event.asset_materialization.partition)["nearest_datasets"].iloc[0]


def test_recommend_command_shows_the_why_columns(loop, capsys):
    world, resources = loop["world"], loop["resources"]
    dataset = world.dataset_names[0]
    result = recommend_folder(world.datasets_dir / dataset, resources)
    assert result.table["model"].tolist() == _recommendations(loop["store"], dataset)["model"].tolist()
    record = result.to_dict()["models"][0]
    assert {"nearest_datasets", "nearest_score", "source_similarity", "prior_score"} <= set(record)
    json.dumps(result.to_dict())  # --json prints this
    print_folder_recommendation(result, top=3)
    out = capsys.readouterr().out
    assert f"nearest training datasets (similarity): {result.table['nearest_datasets'].iloc[0]}" in out
    assert "prior" in out and "nearest" in out and "source" in out


def test_a_reported_result_flows_into_the_ground_truth_and_a_retrain_moves_the_ranking(loop):
    instance, store, results, defs = loop["instance"], loop["store"], loop["results"], loop["defs"]
    assert not _tick(loop).run_requests  # no results folder yet: nothing to do
    ranker = current_artifact(store, "ranking_transformer", None).load()
    train = sorted(d for d, split in ranker.info["splits"].items() if split == "train")
    # a training dataset and the model the ranker likes least among those that are not already the best
    # there (the stand-in's table depends on the CPU's float kernels: its last-ranked model may be the best)
    dataset = train[0]
    before = _recommendations(store, dataset)
    truth_before = current_artifact(store, "ground_truth_ranks", None).load()
    true_rank = truth_before.query("dataset == @dataset").set_index("model")["rank"]
    candidates = before[before["model"].map(true_rank) > 0]
    model = candidates.iloc[-1]["model"]
    rank_before = int(candidates.iloc[-1]["rank"])
    assert rank_before > 0 and true_rank[model] > 0
    gt_version = _data_version(instance, "ground_truth_ranks")
    ranker_version = _data_version(instance, "ranking_transformer")
    automation_cursor = evaluate_automation_conditions(loop["defs"], instance).cursor

    # the team fine-tuned on `dataset`: the model the ranker buried is the best by far
    others = [m for m in before["model"] if m != model]
    _write(results / "finetune_round1.csv", [(dataset, model, 99.0)] + [(dataset, m, 2.0 + i) for i, m in enumerate(others)])
    run, meta = _ingest(loop)
    assert meta["rows_added"] == len(before) and meta["n_rows"] == len(before) and meta["refused_files"] == "none"
    assert "finetune_round1.csv" in meta["accepted_files"] and dataset in meta["rows_per_dataset"]
    assert "finetune_round1.csv" in meta["growth"] and meta["growth_plot"].startswith("![")
    history = current_artifact(store, "result_history", None).load()
    assert set(history["source_file"]) == {"finetune_round1.csv"} and history["source_sha256"].nunique() == 1
    assert history.set_index("model").loc[model, "accuracy"] == pytest.approx(0.99)

    # adding results retrains nothing on its own: no automation asks for the ranker or the ground truth
    automation = evaluate_automation_conditions(defs, instance, cursor=automation_cursor)
    for asset in ("ranking_transformer", "ground_truth_ranks", "autoencoder", "result_history"):
        assert not automation.get_requested_partitions(AssetKey(asset))

    # the deliberate step: ground truth, ranker, recommendations (what the `train` job and `modelrec run` do)
    records = materialize_all(instance, resources=loop["resources"], run_config=FAST_RUN_CONFIG, stages=RETRAIN)
    built = {(r.asset, r.partition) for r in records if r.launched and not r.cache_hit}
    assert ("ground_truth_ranks", None) in built and ("ranking_transformer", None) in built
    assert _data_version(instance, "ground_truth_ranks") != gt_version
    assert _data_version(instance, "ranking_transformer") != ranker_version
    truth = current_artifact(store, "ground_truth_ranks", None).load()
    assert truth.query("dataset == @dataset and model == @model")["rank"].item() == 0  # the mean of both is the best
    after = _recommendations(store, dataset)
    rank_after = int(after.set_index("model").loc[model, "rank"])
    assert rank_after < rank_before, (rank_before, rank_after)
    assert after.set_index("model").loc[model, "true_rank"] == 0
    loop["reported"] = {"dataset": dataset, "model": model, "file": results / "finetune_round1.csv"}


def test_malformed_files_are_refused_whole_and_nothing_is_appended(loop):
    instance, store, results = loop["instance"], loop["store"], loop["results"]
    dataset, model = loop["reported"]["dataset"], loop["reported"]["model"]
    version = _data_version(instance, "result_history")
    n_rows = len(current_artifact(store, "result_history", None).load())
    other = next(m for m in _recommendations(store, dataset)["model"] if m != model)
    _write(results / "bad_accuracy.csv", [(dataset, model, 0.5), (dataset, other, 1.7)])  # 1.7: percent or fraction?
    _write(results / "unknown_model.csv", [(dataset, model, 0.5), (dataset, "resnet_from_nowhere", 0.6)])
    (results / "broken.json").write_text('{"%s": [{"model_name": "%s", "accuracy": 0.8}' % (dataset, model))
    run, meta = _ingest(loop)
    assert meta["rows_added"] == 0 and meta["n_rows"] == n_rows
    assert _data_version(instance, "result_history") == version  # the history did not move
    lines = meta["refused_files"].splitlines()
    assert len(lines) == 3
    for name, problem in (("bad_accuracy.csv", "fractions mixed in"), ("unknown_model.csv", "unknown model"),
                          ("broken.json", "malformed JSON")):
        [line] = [line for line in lines if name in line]
        assert problem in line and str(results / name) in line
    logged = [e.user_message for e in instance.all_logs(run.run_id) if "refused" in (e.user_message or "")]
    assert sum("broken.json" in m for m in logged) == 1
    history = current_artifact(store, "result_history", None).load()
    assert not set(history["source_file"]) & {"bad_accuracy.csv", "unknown_model.csv", "broken.json"}
    for name in ("bad_accuracy.csv", "unknown_model.csv", "broken.json"):
        (results / name).unlink()


def test_the_same_file_dropped_again_appends_nothing(loop):
    instance, store, results = loop["instance"], loop["store"], loop["results"]
    version = _data_version(instance, "result_history")
    n_rows = len(current_artifact(store, "result_history", None).load())
    shutil.copy(loop["reported"]["file"], results / "finetune_round1_again.csv")
    run, meta = _ingest(loop)
    assert meta["rows_added"] == 0 and meta["n_rows"] == n_rows
    assert "finetune_round1_again.csv (same content as finetune_round1.csv)" in meta["already_ingested"]
    assert _data_version(instance, "result_history") == version
    assert not _tick(loop).run_requests  # nothing changed since


def test_a_conflicting_result_is_kept_averaged_and_reported_with_both_values(loop):
    instance, store, results = loop["instance"], loop["store"], loop["results"]
    dataset, model = loop["reported"]["dataset"], loop["reported"]["model"]
    given = load_performance_table(loop["world"].table_path).frame.query("dataset == @dataset and model == @model")["accuracy"].item()
    _write(results / "finetune_round2.csv", [(dataset, model, 0.80)])
    run, meta = _ingest(loop)
    assert meta["rows_added"] == 1
    assert f"{0.99:.4f} (finetune_round1.csv); {0.80:.4f} (finetune_round2.csv)" in meta["conflicts"]
    history = current_artifact(store, "result_history", None).load()
    assert sorted(history.query("model == @model")["accuracy"].round(6)) == [0.8, 0.99]  # both kept
    records = materialize_all(instance, resources=loop["resources"], run_config=FAST_RUN_CONFIG,
                              stages=[("ground_truth_ranks", None)])
    [record] = [r for r in records if r.asset == "ground_truth_ranks"]
    event = instance.get_latest_materialization_event(AssetKey("ground_truth_ranks"))
    conflicts = event.asset_materialization.metadata["result_conflicts"].value
    line = next(line for line in conflicts.splitlines() if f"{dataset} / {model}" in line)
    for value, source in ((given, "performance table"), (0.99, "finetune_round1.csv"), (0.80, "finetune_round2.csv")):
        assert f"{value:.4f} ({source})" in line
    truth = current_artifact(store, "ground_truth_ranks", None).load()
    mean = truth.query("dataset == @dataset and model == @model")["accuracy"].item()
    assert mean == pytest.approx((given + 0.99 + 0.80) / 3)
    assert np.isfinite(mean)


def _observed_results(instance):
    """The data version of the newest observation of the results folder (the source asset ``result_files``)."""
    found = instance.fetch_observations(AssetRecordsFilter(asset_key=AssetKey("result_files")), limit=1).records
    return found[0].asset_observation.tags.get("dagster/data_version") if found else None


def test_a_file_still_being_written_is_left_until_it_has_settled(loop):
    instance, store, results = loop["instance"], loop["store"], loop["results"]
    dataset, model = loop["reported"]["dataset"], loop["reported"]["model"]
    others = [m for m in _recommendations(store, dataset)["model"] if m != model][:3]
    waiting = ResultsFolder(root=str(results), settle_seconds=30)  # a file is read 30 s after its last write
    resources = loop["resources"] | {"results": waiting}
    state = {"instance": instance, "resources": resources, "cursor": loop.get("cursor")}
    job = build_definitions(resources).resolve_job_def("ingest_results")
    past = time.time() - 120
    for earlier in results.iterdir():  # the earlier tests' reports, written seconds ago, are long settled
        os.utime(earlier, (past, past))
    _tick(state)  # their new mtimes are recorded (a run would find them all ingested)
    version, n_rows = _data_version(instance, "result_history"), len(current_artifact(store, "result_history", None).load())

    # a report written in place, row by row, and read half-way: its first rows would validate on their own
    path = results / "finetune_round3.csv"
    rows = [(dataset, m, 0.1 + 0.1 * i) for i, m in enumerate(others)]
    path.write_text("dataset,model,accuracy\n" + f"{rows[0][0]},{rows[0][1]},{rows[0][2]}\n")
    assert waiting.files() == sorted(p for p in results.iterdir() if p.suffix == ".csv" and p != path)
    assert waiting.unsettled() == [path]
    assert not _tick(state).run_requests  # not counted yet
    run = job.execute_in_process(instance=instance)  # a user launching the job anyway reads nothing of it
    assert run.success
    [event] = run.get_asset_materialization_events()
    assert event.materialization.metadata["rows_added"].value == 0
    assert _data_version(instance, "result_history") == version
    assert any("finetune_round3.csv" in (e.user_message or "") and "left for the next run" in e.user_message
               for e in instance.all_logs(run.run_id))
    observed_before = _observed_results(instance)

    with path.open("a") as handle:  # the writer finishes, then nothing touches the file for longer than 30 s
        handle.write("".join(f"{d},{m},{a}\n" for d, m, a in rows[1:]))
    past = time.time() - 60
    os.utime(path, (past, past))
    assert path in waiting.files()
    [request] = _tick(state).run_requests
    run = job.execute_in_process(instance=instance, tags=request.tags)
    assert run.success
    [event] = run.get_asset_materialization_events()
    assert event.materialization.metadata["rows_added"].value == len(rows)  # every row, once
    history = current_artifact(store, "result_history", None).load()
    assert len(history) == n_rows + len(rows)
    assert (history["source_file"] == "finetune_round3.csv").sum() == len(rows)
    assert _observed_results(instance) not in (None, observed_before)  # the source saw the settled file
    loop["cursor"] = state["cursor"]


def test_a_file_changed_while_it_is_read_is_refused_for_now(tmp_path, monkeypatch):
    path = tmp_path / "report.csv"
    path.write_text("dataset,model,accuracy\nd,m,0.5\n")
    folder = ResultsFolder(root=str(tmp_path), settle_seconds=0)
    assert folder.read(path).data == path.read_bytes()
    original = type(path).read_bytes

    def read_while_appended(self):
        data = original(self)
        with open(self, "a") as handle:  # the writer appends while we read
            handle.write("d,n,0.6\n")
        return data

    monkeypatch.setattr(type(path), "read_bytes", read_while_appended)
    with pytest.raises(FileChangedWhileRead, match="report.csv: changed while it was read"):
        folder.read(path)
