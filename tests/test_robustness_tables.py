"""Hand-edited performance tables: each bad input is a clear error or a reported normalisation.

Extends tests/test_performance_table.py (NaN, duplicates, percent scale, negative, > 100, mixed
scales, malformed JSON/CSV, unknown columns, name matching): here repeated JSON keys and CSV
columns, booleans, unreadable files, more malformed inputs, and the ``ground_truth_ranks`` asset's
report of unknown names, normalisations and one-model datasets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dagster import AssetCheckKey, AssetKey, DagsterInstance, SourceAsset
from safetensors.torch import save_file

from assets.ground_truth_ranks import ground_truth_ranks
from assets.shared.partitions import datasets_partitions
from ml_core.artifacts import read_manifest
from ml_core.ground_truth import PerformanceTableError, load_performance_table
from resources.dataset_catalog import DatasetCatalog
from resources.performance_table import PerformanceTableResource
from tests.test_robustness_helpers import failure_text, materialize_partition, metadata_of, zoo_resources


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_a_dataset_listed_twice_in_json_is_merged_and_reported(tmp_path):
    text = ('{"A": [{"model_name": "m1", "accuracy": 0.5}, {"model_name": "m2", "accuracy": 0.6}],'
            ' "B": [{"model_name": "m1", "accuracy": 0.1}], "A": [{"model_name": "m3", "accuracy": 0.7}]}')
    table = load_performance_table(_write(tmp_path, "t.json", text))
    assert sorted(table.frame.loc[table.frame["dataset"] == "A", "model"]) == ["m1", "m2", "m3"]  # none lost
    assert any("more than once" in note and "'A': 2" in note for note in table.report.notes)


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("repeated_key.json", '{"A": [{"model_name": "m1", "accuracy": 0.5, "accuracy": 0.9}]}',
         r"dataset 'A', entry 0: keys given more than once \['accuracy'\]"),
        ("boolean.json", '{"A": [{"model_name": "m1", "accuracy": true}]}', r"entry 0: accuracy.*boolean"),
        ("repeated_column.csv", "dataset,model,accuracy,accuracy\nA,m1,0.5,0.9\n",
         r"columns named more than once: \['accuracy'\]"),
        ("absent.csv", None, r"cannot read the table \(FileNotFoundError"),
    ],
)
def test_ambiguous_or_unreadable_tables_are_errors_naming_the_file(tmp_path, name, text, pattern):
    path = tmp_path / name if text is None else _write(tmp_path, name, text)
    with pytest.raises(PerformanceTableError, match=pattern) as caught:
        load_performance_table(path)
    assert str(caught.value).startswith(str(path))


MORE_BAD_TABLES = [
    ("infinity.json", '{"A": [{"model_name": "m1", "accuracy": Infinity}]}', r"above 100.*inf"),
    ("minus_inf.csv", "dataset,model,accuracy\nA,m1,-inf\n", r"negative.*-inf"),
    ("percent_sign.csv", "dataset,model,accuracy\nA,m1,90%\n", r"not a number.*90%"),
    ("decimal_comma.csv", 'dataset,model,accuracy\nA,m1,"0,5"\n', r"not a number.*0,5"),
    ("semicolons.csv", "dataset;model;accuracy\nA;m1;0.5\n", r"no dataset column"),
    ("latin1.csv", "dataset,model,accuracy\nCaltech,modèle,0.5\n".encode("latin-1"), r"not UTF-8"),
    ("number_as_name.json", '{"A": [{"model_name": 7, "accuracy": 0.5}]}', r"model_name: Input should be a valid string"),
    ("null_name.json", '{"A": [{"model_name": null, "accuracy": 0.5}]}', r"model_name"),
    ("records_not_objects.json", '{"A": [0.5, 0.6]}', r"entry 0"),
    ("top_level_string.json", '"hello"', r"expected a JSON object"),
    ("empty_dataset.json", '{"A": []}', r"empty"),
    ("whitespace.csv", "   \n\n", r"malformed CSV"),
    ("binary.csv", bytes(range(256)) * 4, r"not UTF-8"),
    ("huge_number.csv", "dataset,model,accuracy\nA,m1,1e308\n", r"above 100"),
]


@pytest.mark.parametrize(("name", "text", "pattern"), MORE_BAD_TABLES)
def test_more_malformed_tables_are_clear_errors(tmp_path, name, text, pattern):
    path = _write(tmp_path, name, text)
    with pytest.raises(PerformanceTableError, match=pattern) as caught:
        load_performance_table(path)
    assert str(caught.value).startswith(str(path))


# --- through the ground_truth_ranks asset -------------------------------------------------------------


# ground_truth_ranks may read measured results of other assets when no table is configured;
# with a user table they are not needed, so they stand here as upstream sources never materialized
# (as does the result history: no result reported).
UPSTREAM = tuple(
    SourceAsset(key, partitions_def=None if key == AssetKey("result_history") else datasets_partitions,
                io_manager_key="io_manager")
    for key in ground_truth_ranks.dependency_keys
    if key != AssetKey("ground_truth_ranks")
)


def _gt(resources: dict, instance: DagsterInstance):
    return materialize_partition(ground_truth_ranks, None, resources, instance, upstream=UPSTREAM)


def _world(tmp_path: Path, table: dict | str, suffix: str = ".json") -> dict:
    zoo, datasets = tmp_path / "zoo", tmp_path / "datasets"
    zoo.mkdir()
    for model in ("m1", "m2", "m3"):
        save_file({"w": torch.zeros(2)}, zoo / f"{model}.safetensors")
    for dataset in ("A", "B", "solo"):
        (datasets / dataset / "train" / "c").mkdir(parents=True)
    path = tmp_path / f"performance{suffix}"
    path.write_text(table if isinstance(table, str) else json.dumps(table))
    return zoo_resources(zoo, tmp_path / "artifacts") | {
        "catalog": DatasetCatalog(root=str(datasets)),
        "performance_table": PerformanceTableResource(path=str(path)),
    }


def test_ground_truth_asset_reports_unknown_names_and_normalisations(tmp_path):
    table = {
        "A": [{"model_name": "m1", "accuracy": 80}, {"model_name": "m2", "accuracy": 70},
              {"model_name": "m2", "accuracy": 72}, {"model_name": "mystery", "accuracy": 90},
              {"model_name": "m3", "accuracy": None}],
        "B": [{"model_name": "M1", "accuracy": 50}, {"model_name": "m3", "accuracy": 60}],
        "solo": [{"model_name": "m1", "accuracy": 40}],
        "elsewhere": [{"model_name": "m1", "accuracy": 10}, {"model_name": "m2", "accuracy": 20}],
    }
    resources = _world(tmp_path, table)
    instance = DagsterInstance.ephemeral()
    result = _gt(resources, instance)
    assert result.success, failure_text(result)
    meta = metadata_of(result)
    assert meta["unknown_models"] == "mystery" and meta["unknown_datasets"] == "elsewhere"
    check_key = AssetCheckKey(AssetKey("ground_truth_ranks"), "every_table_name_known")
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == check_key]
    assert not evaluation.passed  # the check flags the unknown names; the asset still ranks the rest
    assert evaluation.metadata["unknown_models"].value == 1 and evaluation.metadata["unknown_datasets"].value == 1

    summary = read_manifest(Path(meta["path"]))["summary"]
    report = summary["table_report"]
    assert report["percent_rescaled"] and report["averaged_duplicates"] == [["A", "m2", 2]]
    assert report["dropped_missing"] == [["A", "m3"]]
    assert summary["excluded_datasets"] == ["solo"]  # one model cannot be ranked: left out, said so
    assert summary["n_datasets"] == 2 and summary["n_rows"] == 4


@pytest.mark.parametrize(
    ("table", "suffix", "pattern"),
    [
        ('{"A": [{"model_name": "m1", "accuracy": 0.5}', ".json", "malformed JSON"),
        ("dataset,model,accuracy\nA,m1,-0.5\n", ".csv", "negative accuracy"),
        ({"elsewhere": [{"model_name": "x", "accuracy": 0.5}, {"model_name": "y", "accuracy": 0.6}]}, ".json",
         "no table entry matches the zoo and the datasets"),
    ],
)
def test_ground_truth_asset_fails_clearly_on_a_bad_table(tmp_path, table, suffix, pattern):
    resources = _world(tmp_path, table, suffix)
    result = _gt(resources, DagsterInstance.ephemeral())
    assert not result.success
    text = failure_text(result)
    assert str(tmp_path / f"performance{suffix}") in text and pattern in text, text
