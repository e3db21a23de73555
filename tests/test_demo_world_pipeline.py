"""The reduced demo world through the whole graph, and the measured table's incremental cache.

Same code as ``make demo`` (the reduced scale: few models, few images). The performance table is
not given: ``transfer_performance`` measures it and ``ground_truth_ranks`` uses it.
"""

import json
import shutil

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance
from safetensors.torch import load_file, save_file

from assets.shared.artifacts import Artifact, current_artifact, source_descriptors
from ml_core.artifacts import read_json
from pipelines.definitions import world_resources
from pipelines.runner import STAGES, materialize_all
from resources.artifact_store import ArtifactStore
from resources.performance_table import PerformanceTableResource
from tests.pipeline_helpers import FAST_RUN_CONFIG, copy_world
from worlds import SOURCE_TASKS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
RUN_CONFIG = json.loads(json.dumps(FAST_RUN_CONFIG))
RUN_CONFIG["ops"]["transfer_performance"] = {"config": {"protocol": {"epochs": 2, "min_steps": 10}}}
TRANSFER_ONLY = [("transfer_performance", "datasets")]


@pytest.fixture(scope="module")
def run(tmp_path_factory, reduced_world):
    root = tmp_path_factory.mktemp("demo_pipeline")
    world = copy_world(reduced_world, root / "world")  # this module adds a model and a dataset to its copy
    resources = world_resources(world, ArtifactStore(root=str(root / "artifacts")))
    instance = DagsterInstance.ephemeral()
    first = materialize_all(instance, resources=resources, run_config=RUN_CONFIG)
    return {"world": world, "resources": resources, "instance": instance, "first": first}


def _artifact(store, asset, partition=None) -> Artifact:
    artifact = current_artifact(store, asset, partition)
    assert artifact is not None, (asset, partition)
    return artifact


def test_every_asset_materializes_on_a_measured_table(run):
    world, first, store = run["world"], run["first"], run["resources"]["store"]
    assert run["resources"]["performance_table"].path == ""  # no table given
    counts = {a: sum(r.asset == a for r in first) for a, _ in STAGES}
    n_models, n_datasets = len(world.model_names), len(world.dataset_names)
    assert counts["transfer_performance"] == counts["dataset_tokens"] == counts["model_recommendations"] == n_datasets
    assert counts["model_parameters"] == counts["model_embeddings"] == n_models
    assert not any(r.cache_hit for r in first if r.asset != "model_source_tokens")
    for dataset in world.dataset_names:
        table = _artifact(store, "transfer_performance", dataset).load()
        assert list(table) == [dataset]
        rows = table[dataset]
        assert sorted(r["model_name"] for r in rows) == sorted(world.model_names)
        assert all(set(r) == {"model_name", "model_type", "accuracy", "trained_on_dataset"} for r in rows)
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
        assert {r["trained_on_dataset"] for r in rows} == {"digits", "gratings", "imagenet-1k"}
    summary = _artifact(store, "ground_truth_ranks").summary()
    assert summary["source"] == "measured (transfer_performance)"
    ranks = _artifact(store, "ground_truth_ranks").load()
    labelled = set(ranks["dataset"])
    assert labelled | set(summary["degenerate_datasets"]) == set(world.dataset_names)
    assert not labelled & set(summary["degenerate_datasets"])  # degenerate columns are not ground truth
    measured = {d: _artifact(store, "transfer_performance", d).load()[d] for d in labelled}
    for row in ranks.itertuples():
        assert row.accuracy == pytest.approx(next(r["accuracy"] for r in measured[row.dataset] if r["model_name"] == row.model))
    for dataset in world.dataset_names:
        recs = _artifact(store, "model_recommendations", dataset).load()
        assert sorted(recs["model"]) == sorted(world.model_names) and np.isfinite(recs["score"]).all()
    event = run["instance"].get_latest_materialization_event(AssetKey("dataset_tokens"))
    assert "efficientnet-lite0" in str(event.asset_materialization.metadata["encoder"].value)
    assert counts["model_source_tokens"] == n_models
    for model in world.model_names:
        tokens = _artifact(store, "model_source_tokens", model).load()
        if model == "efficientnet_lite0_imagenet":
            assert tokens is None  # its card names no sample: neutral downstream
        else:
            task = SOURCE_TASKS[read_json(world.zoo_dir / f"{model}.json")["source_task"]]
            assert tokens.class_names == sorted(task.classes) and tokens.valid.all()
    descriptors = source_descriptors({m: _artifact(store, "model_source_tokens", m) for m in world.model_names},
                                     list(world.model_names))
    same_source = [i for i, m in enumerate(world.model_names) if m.endswith("_digits")]
    assert len(same_source) == 2 and np.allclose(descriptors[same_source[0]], descriptors[same_source[1]])
    # one artifact per sample (and one for "no sample"), encoded once, shared by the models naming it
    refs = {m: _artifact(store, "model_source_tokens", m).ref for m in world.model_names}
    assert refs[world.model_names[same_source[0]]] == refs[world.model_names[same_source[1]]]
    built = [r for r in first if r.asset == "model_source_tokens" and not r.cache_hit]
    assert len(built) == len({ref.partition for ref in refs.values()}) == 3  # digits, gratings, no sample
    assert np.isnan(descriptors[list(world.model_names).index("efficientnet_lite0_imagenet")]).all()


def test_second_run_is_all_cache_hits(run):
    second = materialize_all(run["instance"], resources=run["resources"], run_config=RUN_CONFIG)
    assert all(r.cache_hit for r in second), [r for r in second if not r.cache_hit]
    assert {(r.asset, r.partition): r.data_version for r in second} == {
        (r.asset, r.partition): r.data_version for r in run["first"]
    }


def test_a_new_model_measures_only_its_own_cells(run):
    world, store = run["world"], run["resources"]["store"]
    source = world.zoo_dir / "smallcnn_digits"
    tensors = {k: v * 1.01 if v.dtype.is_floating_point else v for k, v in load_file(f"{source}.safetensors").items()}
    save_file(tensors, world.zoo_dir / "smallcnn_digits_copy.safetensors")
    card = json.loads(source.with_suffix(".json").read_text()) | {"name": "smallcnn_digits_copy"}
    (world.zoo_dir / "smallcnn_digits_copy.json").write_text(json.dumps(card))
    records = materialize_all(run["instance"], resources=run["resources"], run_config=RUN_CONFIG, stages=TRANSFER_ONLY)
    assert records and not any(r.cache_hit for r in records)  # each column changed ...
    for dataset in world.dataset_names:
        summary = _artifact(store, "transfer_performance", dataset).summary()
        assert summary["n_measured"] == len(world.model_names) + 1
        assert summary["n_cells_cached"] == len(world.model_names)  # ... but only the new cell was measured


def test_a_degenerate_dataset_is_flagged_and_left_out(run):
    world, store = run["world"], run["resources"]["store"]
    noise = world.datasets_dir / "zz_shuffled_labels"
    shutil.copytree(world.datasets_dir / "sample_photos", noise)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):  # move a random half of each class's images to the other class
        for a, b in (("china", "flower"), ("flower", "china")):
            files = sorted((noise / split / a).glob("*.png"))
            for f in rng.permutation(files)[: len(files) // 2]:
                f.rename(noise / split / b / f"moved_{a}_{f.name}")
    records = materialize_all(run["instance"], resources=run["resources"], run_config=RUN_CONFIG,
                              stages=[*TRANSFER_ONLY, ("ground_truth_ranks", None)])
    built = {(r.asset, r.partition) for r in records if not r.cache_hit}
    assert ("transfer_performance", "zz_shuffled_labels") in built and ("ground_truth_ranks", None) in built
    spread = _artifact(store, "transfer_performance", "zz_shuffled_labels").summary()["spread"]
    assert spread["degenerate"] and spread["reason"].startswith("at chance"), spread
    summary = _artifact(store, "ground_truth_ranks").summary()
    assert "zz_shuffled_labels" in summary["degenerate_datasets"]
    assert "zz_shuffled_labels" not in set(_artifact(store, "ground_truth_ranks").load()["dataset"])


def test_a_user_table_skips_the_measurement(run, tmp_path):
    world = run["world"]
    table = {d: [{"model_name": m, "accuracy": 0.5 + 0.01 * i} for i, m in enumerate(world.model_names)]
             for d in world.dataset_names}
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    resources = run["resources"] | {"performance_table": PerformanceTableResource(path=str(path))}
    records = materialize_all(run["instance"], resources=resources, run_config=RUN_CONFIG,
                              stages=[*TRANSFER_ONLY, ("ground_truth_ranks", None)])
    store = resources["store"]
    for dataset in world.dataset_names:
        summary = _artifact(store, "transfer_performance", dataset).summary()
        assert summary == {"measured": False, "table": str(path)}
    assert _artifact(store, "ground_truth_ranks").summary()["source"] == "user table"
    assert any(r.asset == "ground_truth_ranks" and not r.cache_hit for r in records)
