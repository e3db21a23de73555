"""Performance tables as people wrote them: ``trained_on_dataset`` as a flag or a source dataset's name, the
original project's other fields, and `modelrec table` giving a malformed one its one-line error."""

import json
from pathlib import Path

import pytest

from ml_core.ground_truth import PerformanceTableError, load_performance_table
from pipelines.cli import cli
from tests.reference_tables import reference_dir

ORIGINAL_FORMAT = {  # the original project's JSON records, with the fields it wrote beside the four read
    "cifar10": [
        {"model_name": "resnet50", "model_type": "resnet", "accuracy": 0.93, "trained_on_dataset": False,
         "num_params": 25557032, "pretrained": True, "fine_tune_epochs": 15, "notes": None},
        {"model_name": "vit_b16", "model_type": "vit", "accuracy": 0.97, "trained_on_dataset": True,
         "num_params": 86567656},
        {"model_name": "mobilenet_v3", "model_type": "mobilenet", "accuracy": 0.88, "trained_on_dataset": "imagenet"},
    ],
    "pets": [
        {"model_name": "resnet50", "model_type": "resnet", "accuracy": 0.91, "trained_on_dataset": "imagenet"},
        {"model_name": "vit_b16", "model_type": "vit", "accuracy": 0.94, "trained_on_dataset": False},
    ],
}


def _sources(table) -> dict[tuple[str, str], str | None]:
    frame = table.frame
    return dict(zip(zip(frame["dataset"], frame["model"], strict=True), frame["trained_on_dataset"], strict=True))


def test_a_flag_or_a_source_name_in_json_means_the_same_thing(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps(ORIGINAL_FORMAT))
    table = load_performance_table(path)
    assert _sources(table) == {
        ("cifar10", "resnet50"): None,  # false: not trained on cifar10, source unknown
        ("cifar10", "vit_b16"): "cifar10",  # true: trained on the row's own dataset
        ("cifar10", "mobilenet_v3"): "imagenet",
        ("pets", "resnet50"): "imagenet",
        ("pets", "vit_b16"): None,
    }
    assert table.frame["accuracy"].tolist() == pytest.approx([0.93, 0.97, 0.88, 0.91, 0.94])
    assert any("flag in 3 rows" in note for note in table.report.notes)


def test_flags_in_a_csv_column_and_a_real_table_without_them(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("dataset,model,accuracy,trained_on_dataset\ncifar10,resnet50,93,No\ncifar10,vit,97,TRUE\n"
                    "pets,resnet50,91,imagenet\npets,vit,94,\n")
    assert _sources(load_performance_table(path)) == {("cifar10", "resnet50"): None, ("cifar10", "vit"): "cifar10",
                                                      ("pets", "resnet50"): "imagenet", ("pets", "vit"): None}
    parc = load_performance_table(reference_dir() / "parc_oracle_controlled.csv")  # names its source datasets
    assert not any("flag" in note for note in parc.report.notes)
    assert parc.frame["trained_on_dataset"].notna().all()


def test_a_record_that_is_not_a_flag_or_a_name_is_still_refused(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"cifar10": [{"model_name": "a", "accuracy": 0.5, "trained_on_dataset": ["x"]}]}))
    with pytest.raises(PerformanceTableError, match="entry 0: trained_on_dataset"):
        load_performance_table(path)


def _table_cli(path: Path, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        cli(["table", str(path)])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_modelrec_table_reads_both_forms_and_gives_a_malformed_one_one_line(tmp_path, capsys):
    good = tmp_path / "original.json"
    good.write_text(json.dumps(ORIGINAL_FORMAT))
    code, out, err = _table_cli(good, capsys)
    assert code == 0 and err == ""
    assert "2 datasets x 3 models, 5 (dataset, model) results" in out and "flag in 3 rows" in out
    broken = {
        "truncated.json": json.dumps(ORIGINAL_FORMAT)[:-20],
        "words.json": json.dumps({"cifar10": [{"model_name": "a", "accuracy": "high"}]}),
        "no_accuracy.csv": "dataset,model,score\ncifar10,a,0.5\n",
    }
    for name, text in broken.items():
        (tmp_path / name).write_text(text)
        code, out, err = _table_cli(tmp_path / name, capsys)
        lines = err.strip().splitlines()
        assert code == 1 and out == "" and len(lines) == 1, (name, err)
        assert str(tmp_path / name) in lines[0] and "PerformanceTableError" in lines[0], lines[0]
    code, _, err = _table_cli(tmp_path / "missing.json", capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "missing.json" in err
