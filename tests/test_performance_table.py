"""Performance tables: the reference CSVs, the JSON format, every error case, name matching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_core.ground_truth import (
    PerformanceTable,
    PerformanceTableError,
    check_names,
    load_performance_table,
    normalize_name,
)
from tests.reference_tables import reference_dir


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_model_spider_table_is_rescaled_from_percent():
    path = reference_dir() / "model_spider_finetune_accuracy.csv"
    table = load_performance_table(path)
    assert table.matrix().shape == (8, 10)
    assert not table.matrix().isna().any().any()
    assert table.report.percent_rescaled
    assert any("percent" in note for note in table.report.notes)
    assert table.report.columns["accuracy"] == "FinetuneAccuracy"
    assert table.matrix().loc["Aircraft", "inception_v3"] == pytest.approx(0.888)
    assert table.frame["accuracy"].between(0, 1).all()


def test_parc_table_joins_architecture_and_source():
    table = load_performance_table(reference_dir() / "parc_oracle_controlled.csv")
    assert len(table.frame) == 196 and table.report.n_rows_read == 196
    matrix = table.matrix()
    # 4 architectures x 8 source datasets = 32 models, 7 targets; no model is fine-tuned on its own
    # source (7 sources x 4 architectures = 28 per target), so 224 - 196 = 28 cells are empty.
    assert matrix.shape == (7, 32)
    assert int(matrix.isna().sum().sum()) == 28
    assert "resnet50__imagenet" in table.models
    row = table.frame.query("model == 'resnet50__nabird' and dataset == 'cifar10'").iloc[0]
    assert row.accuracy == pytest.approx(0.8997)
    assert (row.model_type, row.trained_on_dataset) == ("resnet50", "nabird")
    assert table.report.columns["dataset"] == "Target Dataset"


def test_parc_all_minus_one_sentinel(tmp_path):
    path = reference_dir() / "parc_oracle_all.csv"
    with pytest.raises(PerformanceTableError, match="negative accuracy.*simclr_imagenet.*-1.0"):
        load_performance_table(path)
    table = load_performance_table(path, missing_values=[-1.0])
    assert len(table.report.dropped_missing) == 10
    # 469 data rows: the README's "470" counts a blank (CRLF) line 275, which is skipped.
    assert table.report.n_rows_read == 469 and len(table.frame) == 459


def test_model_columns_option(tmp_path):
    path = write(tmp_path, "t.csv", "net,pretrain,tgt,acc\nr50,in1k,cars,0.8\nr50,in21k,cars,0.9\n")
    with pytest.raises(PerformanceTableError, match="no model column.*model_columns="):
        load_performance_table(path, dataset_column="tgt")
    table = load_performance_table(path, dataset_column="TGT", model_columns=["net", "pretrain"])
    assert table.models == ["r50__in1k", "r50__in21k"]
    assert not table.report.percent_rescaled
    auto = load_performance_table(write(tmp_path, "a.csv", "Arch,Source,Target,Acc\nr50,in1k,cars,0.8\n"))
    assert auto.models == ["r50__in1k"] and auto.datasets == ["cars"]


def test_json_round_trip(tmp_path):
    source = {
        "cars": [
            {"model_name": "resnet50", "model_type": "cnn", "accuracy": 0.9, "trained_on_dataset": "imagenet"},
            {"model_name": "vit_b", "accuracy": 0.85},
        ],
        "pets": [{"model_name": "vit_b", "model_type": "vit", "accuracy": 0.7, "extra": 1}],
    }
    table = load_performance_table(write(tmp_path, "t.json", json.dumps(source)))
    assert table.datasets == ["cars", "pets"] and table.models == ["resnet50", "vit_b"]
    out = table.to_json_dict()
    del source["pets"][0]["extra"]
    assert out == source
    again = load_performance_table(write(tmp_path, "again.json", json.dumps(out)))
    pd.testing.assert_frame_equal(again.frame, table.frame)
    assert np.isnan(table.matrix().loc["pets", "resnet50"])


def test_csv_to_json_round_trip_keeps_percent_fractions(tmp_path):
    table = load_performance_table(write(tmp_path, "t.csv", "Dataset,Model,Top1\nA,m1,80\nA,m2,90\nB,m1,50\n"))
    again = load_performance_table(write(tmp_path, "t.json", json.dumps(table.to_json_dict())))
    assert not again.report.percent_rescaled  # fractions stay fractions
    pd.testing.assert_frame_equal(again.matrix(), table.matrix())
    assert again.matrix().loc["A", "m2"] == pytest.approx(0.9)


def test_nan_dropped_and_duplicates_averaged(tmp_path):
    text = "dataset,model,accuracy\nA,m1,0.5\nA,m1,0.7\nA,m2,\nA,m3,NaN\nB,m2,0.4\n"
    table = load_performance_table(write(tmp_path, "t.csv", text))
    assert table.report.dropped_missing == (("A", "m2"), ("A", "m3"))
    assert table.report.averaged_duplicates == (("A", "m1", 2),)
    assert table.matrix().loc["A", "m1"] == pytest.approx(0.6)
    assert len(table.frame) == 2 and table.report.n_rows_read == 5
    assert any("averaged" in n for n in table.report.notes) and any("dropped" in n for n in table.report.notes)


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("bad.json", '{"A": [{"model_name": "m", "accuracy": 0.5}', "malformed JSON"),
        ("list.json", '[{"model_name": "m", "accuracy": 0.5}]', "expected a JSON object"),
        ("entry.json", '{"A": [{"accuracy": 0.5}]}', r"dataset 'A', entry 0: model_name"),
        ("empty.json", "{}", "empty"),
        ("bad.csv", 'dataset,model,accuracy\nA,m1,0.5\nA,m2,0.6,7,8\n', "malformed CSV"),
        ("quote.csv", 'dataset,model,accuracy\nA,"m1,0.5\n', "malformed CSV"),
        ("blank.csv", "", "malformed CSV"),
        ("nocol.csv", "dataset,model,score\nA,m1,0.5\n", "no accuracy column.*accuracy_column"),
        ("header.csv", "dataset,model,accuracy\n", "empty"),
        ("allnan.csv", "dataset,model,accuracy\nA,m1,\n", "empty"),
        ("neg.csv", "dataset,model,accuracy\nA,m1,0.5\nB,m7,-0.2\n", r"negative.*'B'.*'m7'.*-0\.2"),
        ("big.csv", "dataset,model,accuracy\nA,m1,50\nB,m7,150\n", r"above 100.*'B'.*'m7'.*150"),
        ("mix.csv", "dataset,model,accuracy\nA,m1,85\nB,m7,0.9\n", r"percent.*fractions.*'B'.*'m7'.*0\.9"),
        ("text.csv", "dataset,model,accuracy\nA,m1,good\n", r"not a number.*'A'.*'m1'.*good"),
        ("noname.csv", "dataset,model,accuracy\nA,,0.5\n", "model name missing"),
        ("table.xlsx", "x", "unknown format"),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path, name, text, pattern):
    path = write(tmp_path, name, text)
    with pytest.raises(PerformanceTableError, match=pattern) as caught:
        load_performance_table(path)
    assert str(caught.value).startswith(str(path))
    assert isinstance(caught.value, ValueError)


def test_restrict_and_from_frame():
    frame = pd.DataFrame(
        {"dataset": ["A", "A", "B", "B"], "model": ["ResNet-50", "vit", "ResNet-50", "vit"],
         "accuracy": [80.0, 90.0, 70.0, 60.0]}
    )
    table = PerformanceTable.from_frame(frame)
    assert table.report.percent_rescaled
    small = table.restrict(models=["resnet_50"], datasets=["a", "b"])
    assert small.models == ["ResNet-50"] and small.datasets == ["A", "B"]
    assert small.matrix()["ResNet-50"].tolist() == pytest.approx([0.8, 0.7])
    assert "restricted" in small.report.notes[-1]
    with pytest.raises(PerformanceTableError, match="no rows"):
        table.restrict(models=["nothing"])
    with pytest.raises(PerformanceTableError, match="fraction"):
        PerformanceTable(frame.assign(model_type=None, trained_on_dataset=None))  # percent, unchecked


def test_normalize_name():
    assert normalize_name("  ResNet-50 ") == normalize_name("resnet_50") == "resnet_50"
    assert normalize_name("RESNET 50") == "resnet_50"
    assert normalize_name("ResNet-50") != normalize_name("resnet50")
    assert normalize_name("Oxford.Pets") == normalize_name("oxford_pets")
    assert normalize_name("ｒｅｓｎｅｔ５０") == "resnet50"  # NFKC folds full-width characters
    assert normalize_name("a__b") != normalize_name("a_b")


def test_name_collisions_are_reported_not_merged(tmp_path):
    text = "dataset,model,accuracy\nA,ResNet-50,0.5\nA,resnet 50,0.6\n"
    table = load_performance_table(write(tmp_path, "t.csv", text))
    assert table.models == ["ResNet-50", "resnet 50"]
    assert table.report.name_collisions == (("ResNet-50", "resnet 50"),)


def test_check_names(tmp_path):
    text = "dataset,model,accuracy\nCIFAR-10,ResNet-50,0.9\nCIFAR-10,mystery,0.8\nPets,ResNet-50,0.7\n"
    table = load_performance_table(write(tmp_path, "t.csv", text))
    report = check_names(table, known_models=["resnet_50", "vit_b"], known_datasets=["cifar_10", "dtd"])
    assert report.unknown_models == ("mystery",)
    assert report.missing_models == ("vit_b",)
    assert report.unknown_datasets == ("Pets",)
    assert report.missing_datasets == ("dtd",)
    assert report.model_map == {"ResNet-50": "resnet_50"}
    assert report.dataset_map == {"CIFAR-10": "cifar_10"}
    assert not report.all_known
    with pytest.raises(ValueError, match="both normalise"):
        check_names(table, known_models=["a-b", "A.B"], known_datasets=[])
