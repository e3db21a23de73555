"""Ground-truth ranks and scores from a tiny performance table with ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_core.ground_truth import GROUND_TRUTH_COLUMNS, PerformanceTable, ground_truth_ranks


@pytest.fixture
def table() -> PerformanceTable:
    rows = [
        ("B", "m1", 0.60), ("B", "m2", 0.80), ("B", "m3", 0.80), ("B", "m4", 0.40),  # a tie for first
        ("A", "m1", 0.50), ("A", "m2", 0.50),  # all equal
        ("C", "m1", 0.90),  # one model: cannot be ranked
    ]
    return PerformanceTable.from_frame(pd.DataFrame(rows, columns=["dataset", "model", "accuracy"]))


def test_ranks_scores_and_ties(table):
    truth = ground_truth_ranks(table)
    frame = truth.frame
    assert tuple(frame.columns) == GROUND_TRUTH_COLUMNS
    assert truth.excluded_datasets == ("C",)
    assert truth.datasets == ["B", "A"]  # table order, C left out

    b = frame[frame["dataset"] == "B"].set_index("model")
    assert b["rank"].to_dict() == {"m2": 0, "m3": 0, "m1": 2, "m4": 3}  # ties share the min rank
    assert list(b.index) == ["m2", "m3", "m1", "m4"]  # by rank, then name
    accuracy = np.array([0.60, 0.80, 0.80, 0.40])
    z = (accuracy - accuracy.mean()) / accuracy.std()
    assert b.loc[["m1", "m2", "m3", "m4"], "score"].to_numpy() == pytest.approx(z)
    assert b["score"].mean() == pytest.approx(0.0)
    assert b.loc[["m1", "m2", "m3", "m4"], "norm_accuracy"].tolist() == pytest.approx([0.5, 1.0, 1.0, 0.0])
    assert (b["n_models"] == 4).all()

    a = frame[frame["dataset"] == "A"]
    assert a["rank"].tolist() == [0, 0]
    assert a["score"].tolist() == [0.0, 0.0]
    assert a["norm_accuracy"].tolist() == [1.0, 1.0]
    assert np.issubdtype(frame["rank"].dtype, np.integer) and np.issubdtype(frame["n_models"].dtype, np.integer)


def test_deterministic_and_independent_of_row_order(table):
    shuffled = PerformanceTable.from_frame(table.frame.sample(frac=1.0, random_state=3).iloc[::-1])
    first = ground_truth_ranks(table).frame
    again = ground_truth_ranks(table).frame
    pd.testing.assert_frame_equal(first, again)
    reordered = ground_truth_ranks(shuffled).frame
    key = ["dataset", "model"]
    pd.testing.assert_frame_equal(
        first.sort_values(key).reset_index(drop=True), reordered.sort_values(key).reset_index(drop=True)
    )


def test_pivot(table):
    wide = ground_truth_ranks(table).pivot("rank")
    assert wide.shape == (2, 4)
    assert wide.loc["B", "m4"] == 3 and np.isnan(wide.loc["A", "m3"])
