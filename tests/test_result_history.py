"""Results that flow back, as pure functions: validation of a results file, the append-only history,
conflicts averaged, and the "why" of a ranking (nearest training datasets, source similarity).

Small generated data (stand-in names and numbers, not measurements)."""

import io

import numpy as np
import pandas as pd
import pytest

from ml_core.ground_truth import (
    HISTORY_COLUMNS,
    KnownNames,
    PerformanceTable,
    PerformanceTableError,
    ResultFile,
    as_history,
    empty_history,
    growth_tables,
    history_content_hash,
    ingest_results,
    merge_history,
    validate_result_file,
)
from ml_core.ranking import BaselineReference, explain_ranking, nearest_datasets
from ml_core.ranking.baselines import nearest_dataset_scores, source_similarity

KNOWN = KnownNames.build({"m1": "m1", "Model Two": "model_two", "m3": "m3"}, {"cars": "cars", "Pets": "pets"},
                         table_datasets=["flowers"])
NOW = pd.Timestamp("2026-12-03 12:00", tz="UTC")
GOOD = b"dataset,model,accuracy\ncars,m1,81.5\npets,model_two,70\nflowers,m3,64\n"


def _table() -> PerformanceTable:
    frame = pd.DataFrame({"dataset": ["cars", "cars", "cars", "Pets"], "model": ["m1", "Model Two", "m3", "m1"],
                          "accuracy": [0.6, 0.7, 0.5, 0.4]})
    return PerformanceTable.from_frame(frame, source="table.json")


def test_a_valid_file_is_read_in_fractions_with_the_known_spelling():
    rows = validate_result_file(ResultFile("r.csv", GOOD), KNOWN)
    assert rows.to_dict("list") == {"dataset": ["cars", "Pets", "flowers"], "model": ["m1", "Model Two", "m3"],
                                    "accuracy": [0.815, 0.70, 0.64]}
    json_file = ResultFile("r.json", b'{"pets": [{"model_name": "model_two", "accuracy": 0.5}]}')
    assert validate_result_file(json_file, KNOWN).to_dict("list") == {
        "dataset": ["Pets"], "model": ["Model Two"], "accuracy": [0.5]}  # partition keys name them too


@pytest.mark.parametrize(("data", "problem"), [
    (b"dataset,model,accuracy\ncars,m1,0.5\ncars,nope,0.6\n", "unknown model 'nope'"),
    (b"dataset,model,accuracy\ncars,m1,0.5\nmars,m1,0.6\n", "unknown dataset 'mars'"),
    (b"dataset,model,accuracy\ncars,m1,50\ncars,m3,130\n", "accuracy above 100"),
    (b"dataset,model,accuracy\ncars,m1,-0.1\n", "negative accuracy"),
    (b"dataset,model,accuracy\ncars,m1,80\ncars,m3,0.7\n", "fractions mixed in"),
    (b"dataset,model,accuracy\ncars,m1,0.5\ncars,m3,\n", "without an accuracy"),
    (b"dataset,model,accuracy\ncars,m1,high\n", "not a number"),
    (b"dataset,model\ncars,m1\n", "no accuracy column"),
    (b"", "malformed CSV"),
])
def test_a_bad_file_is_refused_whole_with_one_line_naming_it(data, problem):
    with pytest.raises(PerformanceTableError) as caught:
        validate_result_file(ResultFile("bad.csv", data), KNOWN, source="results/bad.csv")
    message = str(caught.value)
    assert message.startswith("results/bad.csv: ") and problem in message
    ingestion = ingest_results(empty_history(), [ResultFile("bad.csv", data)], KNOWN, now=NOW)
    assert ingestion.history.empty and ingestion.added.empty and not ingestion.accepted  # nothing of it appended
    [refusal] = ingestion.refused
    assert refusal.file == "bad.csv" and "\n" not in refusal.reason and problem in refusal.reason


def test_history_appends_and_never_ingests_the_same_content_twice():
    first = ingest_results(empty_history(), [ResultFile("a.csv", GOOD)], KNOWN, now=NOW)
    assert list(first.history.columns) == list(HISTORY_COLUMNS)
    assert first.accepted == {"a.csv": 3} and set(first.history["ingestion"]) == {1}
    assert set(first.history["source_file"]) == {"a.csv"} and first.history["ingested_at"].eq(NOW).all()
    later = NOW + pd.Timedelta(hours=1)
    other = b'{"cars": [{"model_name": "m3", "accuracy": 0.55}]}'
    second = ingest_results(first.history, [ResultFile("a.csv", GOOD), ResultFile("copy.csv", GOOD),
                                            ResultFile("b.json", other)], KNOWN, now=later)
    assert second.accepted == {"b.json": 1} and second.duplicates == {"a.csv": "a.csv", "copy.csv": "a.csv"}
    assert len(second.history) == 4 and second.history.iloc[:3].equals(first.history)  # earlier rows untouched
    assert second.history.iloc[3]["ingestion"] == 2 and second.history.iloc[3]["ingested_at"] == later
    per_dataset, per_ingestion = growth_tables(second.history)
    assert per_dataset.set_index("dataset")["rows"].to_dict() == {"Pets": 1, "cars": 2, "flowers": 1}
    assert per_ingestion["rows_added"].tolist() == [3, 1] and per_ingestion["total_rows"].tolist() == [3, 4]
    # the content hash survives parquet (the data version must not move on a re-read)
    buffer = io.BytesIO()
    second.history.to_parquet(buffer, index=False)
    back = as_history(pd.read_parquet(io.BytesIO(buffer.getvalue())))
    assert history_content_hash(back) == history_content_hash(second.history)
    assert history_content_hash(first.history) != history_content_hash(second.history)


def test_conflicting_results_are_all_kept_and_averaged_with_every_value_reported():
    history = ingest_results(empty_history(), [
        ResultFile("a.csv", b"dataset,model,accuracy\ncars,m1,0.9\ncars,m3,0.5\n"),
        ResultFile("b.csv", b"dataset,model,accuracy\ncars,m1,0.75\n"),
    ], KNOWN, now=NOW).history
    assert len(history) == 3  # both rows of (cars, m1) kept
    merged, conflicts = merge_history(_table(), history)
    acc = merged.frame.set_index(["dataset", "model"])["accuracy"]
    assert acc[("cars", "m1")] == pytest.approx((0.6 + 0.9 + 0.75) / 3)
    assert acc[("cars", "m3")] == pytest.approx(0.5)  # equal values: no conflict
    assert acc[("cars", "Model Two")] == pytest.approx(0.7)  # untouched
    [conflict] = conflicts
    assert (conflict["dataset"], conflict["model"]) == ("cars", "m1")
    assert conflict["values"] == [["performance table", 0.6], ["a.csv", 0.9], ["b.csv", 0.75]]
    assert conflict["mean"] == pytest.approx(0.75)
    assert any("result history" in note for note in merged.report.notes)
    table, none = merge_history(_table(), empty_history())
    assert table.frame.equals(_table().frame) and none == []


def _reference(rng: np.random.Generator) -> tuple[BaselineReference, np.ndarray]:
    descriptors = rng.normal(size=(5, 8))
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    accuracy = rng.uniform(0.3, 0.9, size=(5, 4))
    accuracy[2, 1] = np.nan
    reference = BaselineReference([f"d{i}" for i in range(5)], ["a", "b", "c", "d"], accuracy, descriptors, {}, k=3)
    target = descriptors[3] + 0.3 * rng.normal(size=8)
    return reference, target / np.linalg.norm(target)


def test_why_columns_are_the_nearest_datasets_and_the_similarities_the_ranker_uses():
    rng = np.random.default_rng(0)
    reference, target = _reference(rng)
    sims = reference.descriptors @ target
    expected = [f"d{i}" for i in np.argsort(-sims)[:3]]
    nearest = nearest_datasets(reference, target)
    assert [name for name, _ in nearest] == expected and expected[0] == "d3"
    assert [s for _, s in nearest] == pytest.approx(sorted(sims, reverse=True)[:3])
    sources = rng.normal(size=(5, 8))
    sources[4] = np.nan  # "new" has no source sample
    why = explain_ranking(reference, target, ["c", "a", "new", "b", "d"], sources)
    cosine = sources[:4] @ target / np.linalg.norm(sources[:4], axis=1)
    assert why.source_similarity[:4] == pytest.approx(cosine) and np.isnan(why.source_similarity[4])
    knn, _ = nearest_dataset_scores(target, reference.descriptors, reference.accuracy, k=3, temperature=0.05)
    assert why.nearest_score[[1, 3, 0, 4]] == pytest.approx(knn)  # the ranker's nearest-dataset feature, unscaled
    assert np.isnan(why.nearest_score[2])  # a model the ranker never saw: no result there
    assert why.nearest_text().startswith(f"d3 ({sims[3]:.3f})")
    assert np.isnan(explain_ranking(None, target, ["a"]).nearest_score).all()
    assert source_similarity(target, sources[:1])[0] == pytest.approx(why.source_similarity[0])
