"""Two-stage shortlists: top-k, the history-coverage portfolio, and the re-ranking."""

import numpy as np
import pytest

from ml_core.ranking import (
    coverage_shortlist,
    default_shortlist_size,
    history_regret,
    rerank_shortlist,
    top_k,
    two_stage_shortlist,
)

# Three past datasets, four models: m0 is a solid all-rounder (never the best), m1 wins dataset 0,
# m2 wins datasets 1 and 2, m3 is never good.
HISTORY = np.array([
    [0.70, 0.90, 0.40, 0.10],
    [0.75, 0.30, 0.95, 0.10],
    [0.72, 0.35, 0.90, 0.20],
])


def test_top_k_takes_the_highest_scores_stably():
    assert top_k(np.array([0.2, 0.9, 0.9, 0.1]), 2).tolist() == [1, 2]
    assert top_k(np.array([0.2, 0.9]), 5).tolist() == [1, 0]


def test_history_regret_is_the_mean_distance_to_each_datasets_best():
    assert history_regret(HISTORY, np.array([1, 2])) == pytest.approx(0.0)
    assert history_regret(HISTORY, np.array([0])) == pytest.approx(np.mean([0.20, 0.20, 0.18]))
    with_unknown = HISTORY.copy()
    with_unknown[0, 0] = np.nan  # m0 has no result on dataset 0: it cannot be the pick there
    assert history_regret(with_unknown, np.array([0])) == pytest.approx(np.mean([0.80, 0.20, 0.18]))


def test_coverage_picks_the_models_that_were_best_somewhere_not_the_all_rounder():
    prior = HISTORY.mean(0)  # ranks m0 and m2 above m1
    short = coverage_shortlist(HISTORY, 2, prior)
    assert sorted(short.tolist()) == [1, 2]  # regret 0 on every past dataset; prior top-2 would be {2, 0}
    assert sorted(top_k(prior, 2).tolist()) == [0, 2]


def test_coverage_keeps_the_first_stage_picks_then_fills_and_falls_back_to_it():
    first = np.array([0.0, 0.0, 0.0, 5.0])  # the first stage loves m3
    short = coverage_shortlist(HISTORY, 3, first, n_first=1)
    assert short[0] == 3 and sorted(short[1:].tolist()) == [1, 2]
    # once the history is covered, the remaining slots follow the first stage
    full = coverage_shortlist(HISTORY, 4, np.array([0.0, 0.1, 0.2, 0.3]))
    assert sorted(full[:2].tolist()) == [1, 2] and full[2:].tolist() == [3, 0]


def test_models_without_history_enter_only_through_the_first_stage():
    history = np.c_[HISTORY, np.full(3, np.nan)]  # m4: a new model, no past result
    first = np.array([0.0, 0.0, 0.0, 0.0, 9.0])
    assert 4 not in coverage_shortlist(history, 2, first).tolist()
    assert coverage_shortlist(history, 2, first, n_first=1)[0] == 4
    no_history = np.full((2, 3), np.nan)
    assert coverage_shortlist(no_history, 2, np.array([0.1, 0.3, 0.2])).tolist() == [1, 2]


def test_two_stage_reorders_only_the_rankers_top_k_by_logme():
    ranker = np.array([0.9, 0.8, 0.1, 0.7, 0.0])
    logme = np.array([1.0, 5.0, 9.0, 3.0, 8.0])  # read only for the shortlisted models
    short = top_k(ranker, 3)
    assert sorted(short.tolist()) == [0, 1, 3]  # models 2 and 4 never run
    scores = rerank_shortlist(ranker, logme, short)
    assert list(np.argsort(-scores)) == [1, 3, 0, 2, 4]  # LogME order inside, the ranker's outside


def test_the_products_shortlist_is_the_rankers_top_half_then_coverage_or_top_k_without_history():
    scores = np.array([0.0, 0.1, 0.2, 0.9])  # the ranker's favourite is m3
    short = two_stage_shortlist(scores, HISTORY, 3)
    assert short[0] == 3 and sorted(short[1:].tolist()) == [1, 2]
    assert two_stage_shortlist(scores, None, 3).tolist() == [3, 2, 1]
    assert two_stage_shortlist(scores, np.full((2, 4), np.nan), 2).tolist() == [3, 2]
    assert [default_shortlist_size(n) for n in (1, 2, 25)] == [1, 1, 8]


def test_equal_gains_are_broken_by_the_first_stage_not_by_float_rounding():
    # each model lifts one dataset by 0.2 over its worst: 0.3 - 0.1 and 0.4 - 0.2 differ in floating point
    history = np.array([[0.1, 0.3, 0.1], [0.2, 0.2, 0.4], [0.3, 0.1, 0.1]])
    assert 0.3 - 0.1 != 0.4 - 0.2
    for preferred in (0, 1, 2):
        first = np.zeros(3)
        first[preferred] = 1.0
        assert coverage_shortlist(history, 1, first).tolist() == [preferred]
