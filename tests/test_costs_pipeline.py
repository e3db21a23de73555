"""``model_costs`` and the costed ``model_recommendations`` through Dagster, and ``modelrec recommend``'s budget.

On a private copy of the STAND-IN world (generated models and images: every figure here is from stand-in
data) plus one checkpoint with no model card (``mystery``): its network cannot be built, so it has a size
and a parameter count from its tensors, no latency, and must never be on the front nor pass a latency budget.
"""

import importlib
import json
import struct

import numpy as np
import pytest
import torch
from dagster import AssetKey, DagsterInstance, materialize
from safetensors.torch import save_file

from assets import ALL_ASSETS
from assets.shared.artifacts import current_artifact
from ml_core.ranking.pareto import pareto_front
from pipelines.cli import cli
from pipelines.runner import STAGES, materialize_all
from tests.pipeline_helpers import FAST_RUN_CONFIG, copy_world, resources_for, world_env

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SERVING = [s for s in STAGES if s[0] not in ("transferability_scores", "ranker_evaluation", "embedding_probes")]
COSTS_CONFIG = {"model_costs": {"config": {"warmup": 1, "repeats": 3}}}


@pytest.fixture(scope="module")
def graph(tmp_path_factory, standin_world):
    root = tmp_path_factory.mktemp("costs")
    world = copy_world(standin_world, root / "world")
    generator = torch.Generator().manual_seed(0)
    save_file({"layer.weight": torch.randn(64, 48, generator=generator), "layer.bias": torch.zeros(64)},
              str(world.zoo_dir / "mystery.safetensors"))  # no sidecar card: no architecture
    resources = resources_for(world, root / "artifacts")
    (root / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(root / "dagster_home"))
    config = {"ops": {**FAST_RUN_CONFIG["ops"], **COSTS_CONFIG}}
    first = materialize_all(instance, resources=resources, run_config=config, stages=SERVING)
    yield {"world": world, "root": root, "resources": resources, "instance": instance, "config": config, "first": first}
    instance.dispose()


def _costs(graph, model):
    return current_artifact(graph["resources"]["store"], "model_costs", model).load()


def test_every_model_has_costs_and_the_cardless_one_says_why(graph):
    world = graph["world"]
    for model in world.model_names:
        costs = _costs(graph, model)
        assert costs.reason is None, costs.reason
        assert costs.params > 0 and costs.flops > 0 and costs.latency_ms_b1 > 0 and costs.latency_ms_b32 > 0
        assert costs.size_bytes == graph["resources"]["zoo"].entry(model).path.stat().st_size
        assert costs.machine["cpu"] and costs.machine["torch_threads"] == 1
    mystery = _costs(graph, "mystery")
    assert "names no architecture" in mystery.reason
    assert mystery.params == 64 * 48 + 64 and mystery.latency_ms_b1 is None and mystery.flops is None
    header_length = struct.unpack("<Q", (graph["world"].zoo_dir / "mystery.safetensors").read_bytes()[:8])[0]
    assert mystery.size_bytes == 8 + header_length + (64 * 48 + 64) * 4


def test_recommendations_carry_costs_and_the_front(graph):
    store, world = graph["resources"]["store"], graph["world"]
    for dataset in world.dataset_names:
        artifact = current_artifact(store, "model_recommendations", dataset)
        table = artifact.load()
        assert {"params", "size_mb", "gflops", "latency_ms_b1", "latency_ms_b32", "on_front"} <= set(table.columns)
        by_model = table.set_index("model")
        for model in world.model_names:
            costs = _costs(graph, model)
            assert by_model.loc[model, "params"] == costs.params
            assert by_model.loc[model, "latency_ms_b1"] == pytest.approx(costs.latency_ms_b1)
        assert np.isnan(by_model.loc["mystery", "latency_ms_b1"]) and not by_model.loc["mystery", "on_front"]
        assert table["on_front"].tolist() == pareto_front(table["score"], table["latency_ms_b1"]).tolist()
        assert table["on_front"].any()
        best = table.loc[table["latency_ms_b1"].notna()].sort_values("score", ascending=False).iloc[0]
        assert best["on_front"]  # the best-scored model of known cost is always on the front
        summary = artifact.summary()
        assert summary["front_cost"] == "latency_ms_b1" and summary["n_unknown_cost"] == 1
        assert (artifact.directory / "cost_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = graph["instance"].fetch_materializations(AssetKey("model_recommendations"), limit=1).records
    metadata = events[0].asset_materialization.metadata
    assert metadata["cost_front"].value.startswith("![predicted score vs cost](data:image/png;base64,")
    assert metadata["pareto_front"].value["models_of_unknown_cost"] == 1


def test_a_second_run_recomputes_nothing(graph):
    again = materialize_all(graph["instance"], resources=graph["resources"], run_config=graph["config"], stages=SERVING)
    versions = {(r.asset, r.partition): r.data_version for r in graph["first"]}
    assert {(r.asset, r.partition): r.data_version for r in again} == versions
    assert all(r.cache_hit for r in again)
    # had it run, model_costs would have been a cache hit: the same machine measured it already
    rerun = materialize(ALL_ASSETS, selection=["model_costs"], partition_key="mystery", instance=graph["instance"],
                        resources=graph["resources"], run_config={"ops": COSTS_CONFIG})
    (event,) = rerun.get_asset_materialization_events()
    assert event.materialization.metadata["cache_hit"].value is True


def test_another_machine_measures_again(graph, monkeypatch):
    model = graph["world"].model_names[0]
    monkeypatch.setattr(importlib.import_module("assets.model_costs"), "describe_machine",
                        lambda threads: {"cpu": "Another CPU", "logical_cpus": 64, "torch_threads": threads,
                                         "torch": torch.__version__, "arch": "x86_64"})
    run = materialize(ALL_ASSETS, selection=["model_costs"], partition_key=model, instance=graph["instance"],
                      resources=graph["resources"], run_config={"ops": COSTS_CONFIG})
    (event,) = run.get_asset_materialization_events()
    assert event.materialization.metadata["cache_hit"].value is False
    monkeypatch.undo()
    back = materialize(ALL_ASSETS, selection=["model_costs"], partition_key=model, instance=graph["instance"],
                       resources=graph["resources"], run_config={"ops": COSTS_CONFIG})
    (event,) = back.get_asset_materialization_events()
    assert event.materialization.metadata["cache_hit"].value is True  # this machine's figures are still there


def _recommend(graph, args, monkeypatch, capsys):
    for key, value in world_env(graph["world"], graph["root"] / "artifacts").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELREC_OFFLINE", "1")
    with pytest.raises(SystemExit) as exit_:
        cli(["recommend", str(graph["world"].datasets_dir / graph["world"].dataset_names[0]), *args])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    return out


def test_cli_filters_to_a_budget_and_says_what_it_left_out(graph, monkeypatch, capsys):
    world = graph["world"]
    params = {m: _costs(graph, m).params for m in world.model_names}
    limit = sorted(params.values())[len(params) // 2]  # about half the zoo
    within = {m for m, p in params.items() if p <= limit}
    result = json.loads(_recommend(graph, ["--max-params", str(limit), "--json", "--top", "0"], monkeypatch, capsys))
    kept = {row["model"] for row in result["models"]}
    assert kept == within | {"mystery"}  # mystery's parameter count is known (from its tensors)
    assert all(row["params"] <= limit for row in result["models"])
    assert result["budget"]["n_filtered"] == len(world.model_names) - len(within)
    assert set(result["budget"]["over"]["--max-params"]) == set(params) - within

    latency = {m: _costs(graph, m).latency_ms_b1 for m in world.model_names}
    generous = 10 * max(latency.values())  # every measured model fits
    text = _recommend(graph, ["--max-latency-ms", str(generous), "--top", "0"], monkeypatch, capsys)
    assert f"{len(world.model_names)} model(s) kept, 1 filtered out" in text
    assert "1 excluded because their cost is unknown" in text and "mystery (no latency_ms_b1)" in text
    assert "mystery" not in text.split("budget (")[0]  # not in the printed ranking
