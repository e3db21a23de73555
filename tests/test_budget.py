"""A budget of forward passes: the loop that measures k models and predicts the rest from the history,
the linear probe that measures them, the other data-free priors, and their rows in the evaluation."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import ml_core.evaluation.evaluation as evaluation
from ml_core.evaluation import EvaluationConfig, evaluate, leave_family_out_folds
from ml_core.ground_truth.transferability import probe_accuracy
from ml_core.metrics import spearman, weighted_tau
from ml_core.ranking import BudgetConfig, budgeted_ranking
from ml_core.ranking.baselines import attribute_prior, data_free_prior
from ml_core.ranking.budget import GaussianZoo, combined_values, dataset_weights, expected_gain
from ml_core.ranking.baselines.prior import minmax_rows
from tests.test_evaluation import _toy_data


def _history(seed=0, t=10, n=20):
    """``t`` past datasets in two kinds: even rows order the zoo one way, odd rows the reverse way."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0.3, 0.9, n)
    rows = [np.where(d % 2 == 0, base, base[::-1]) + rng.normal(scale=0.03, size=n) for d in range(t)]
    return np.array(rows)


def test_zero_passes_is_the_data_free_prior():
    history = _history()
    run = budgeted_ranking(history, lambda j: pytest.fail("no pass may be spent"), BudgetConfig(passes=0))
    np.testing.assert_allclose(run.scores, data_free_prior(history))
    assert run.measured == [] and len(run.trace) == 1


def test_measurements_pick_the_past_datasets_that_rank_like_the_target_and_beat_the_prior():
    history = _history()
    target = np.linspace(0.3, 0.9, 20)[::-1] + 0.01 * np.sin(np.arange(20))  # ranks like the odd rows
    run = budgeted_ranking(history, lambda j: target[j], BudgetConfig(passes=5, strength=2.0))
    assert len(run.measured) == 5 and len(set(run.measured)) == 5
    assert run.weights[1::2].sum() > 0.95  # the odd rows carry the weight
    assert weighted_tau(target, run.scores) > 0.9 > weighted_tau(target, data_free_prior(history)) + 0.5
    # the evidence grows with the passes: no weighting from fewer than 3 values (any two correlate perfectly)
    norm = minmax_rows(history)
    np.testing.assert_allclose(dataset_weights(norm, run.measured[:2], [target[j] for j in run.measured[:2]], 2.0),
                               np.full(10, 0.1))


def test_a_budget_of_k_is_the_first_k_passes_of_a_longer_one():
    history = _history(seed=1)
    rng = np.random.default_rng(3)
    values = rng.random(20)
    for selection in ("expected_gain", "top", "uncertainty"):
        long = budgeted_ranking(history, lambda j: values[j], BudgetConfig(passes=6, selection=selection))
        short = budgeted_ranking(history, lambda j: values[j], BudgetConfig(passes=3, selection=selection))
        assert short.measured == long.measured[:3]
        for a, b in zip(short.trace, long.trace[:4], strict=True):
            np.testing.assert_allclose(a, b)


def test_a_model_that_cannot_be_measured_spends_its_pass_and_is_not_counted():
    history = _history()
    failed = int(np.argmax(data_free_prior(history)))  # the first pass goes to the predicted best
    run = budgeted_ranking(history, lambda j: np.nan if j == failed else float(j), BudgetConfig(passes=4))
    assert failed not in run.measured and len(run.measured) == 3 and len(run.trace) == 5
    pairs = budgeted_ranking(history, lambda j: np.nan if j == failed else (float(j), -float(j)),
                             BudgetConfig(passes=4, second_weight=0.5))  # a failed pass of two proxies: one NaN
    assert failed not in pairs.measured and len(pairs.measured) == 3 and len(pairs.second) == 3


def test_a_measured_models_own_value_orders_it_when_fully_trusted():
    history = _history()
    values = np.random.default_rng(5).random(20)
    run = budgeted_ranking(history, lambda j: values[j], BudgetConfig(passes=5, measured_weight=1.0))
    measured = np.array(run.measured)
    assert list(measured[np.argsort(-run.scores[measured])]) == list(measured[np.argsort(-values[measured])])
    ignored = budgeted_ranking(history, lambda j: values[j], BudgetConfig(passes=5, measured_weight=0.0))
    np.testing.assert_allclose(ignored.scores, ignored.mean)  # the history alone


def test_the_gaussian_zoo_learns_the_target_from_a_few_accurate_measurements():
    history = _history()
    target = np.linspace(0.3, 0.9, 20)[::-1] + 0.01 * np.sin(np.arange(20))  # ranks like the odd rows
    config = BudgetConfig(passes=5, method="gaussian", noise=0.01, shrinkage=0.2)
    run = budgeted_ranking(history, lambda j: target[j], config)
    assert len(set(run.measured)) == 5
    assert weighted_tau(target, run.scores) > 0.9
    np.testing.assert_allclose(run.scores[run.measured], target[run.measured], atol=0.03)  # trusted: little noise
    zero = budgeted_ranking(history, lambda j: pytest.fail("no pass"), dataclasses.replace(config, passes=0))
    # no pass: each model's mean advantage in the history, which orders the zoo as the prior does
    # (up to near-ties: the prior averages min-max normalised rows, this raw accuracies)
    assert spearman(zero.scores, data_free_prior(history)) > 0.95
    # a model without any past result is the most uncertain, so expected gain measures it early
    fresh = np.c_[history, np.full(len(history), np.nan)]
    zoo = GaussianZoo(fresh, 0.2)
    assert np.argmax(np.diag(zoo.covariance)) == 20
    run = budgeted_ranking(fresh, lambda j: np.r_[target, 0.95][j], config)
    assert 20 in run.measured and int(np.argmax(run.scores)) == 20
    # a past dataset without any result is ignored; a history without any result is an error
    np.testing.assert_allclose(GaussianZoo(np.r_[history, np.full((1, 20), np.nan)], 0.2).prior,
                               GaussianZoo(history, 0.2).prior)
    with pytest.raises(ValueError, match="no result"):
        GaussianZoo(np.full((2, 3), np.nan), 0.2)


def test_expected_gain_prefers_the_uncertain_model_at_equal_mean_and_the_better_at_equal_spread():
    gain = expected_gain(np.array([0.5, 0.5, 0.7]), np.array([0.01, 0.2, 0.01]), best=0.6)
    assert gain[1] > gain[0] and gain[2] > gain[0]
    assert gain[2] == pytest.approx(0.1, abs=1e-3)  # sure to beat the best by 0.1


def test_uncertainty_sampling_measures_what_the_history_knows_least_and_learns_the_ranking_from_it():
    history = _history()
    target = np.linspace(0.3, 0.9, 20)[::-1] + 0.01 * np.sin(np.arange(20))  # ranks like the odd rows
    fresh = np.c_[history, np.full(len(history), np.nan)]  # model 20: no past result, the least known
    config = BudgetConfig(passes=5, method="gaussian", noise=0.01, shrinkage=0.2, selection="uncertainty")
    zoo = GaussianZoo(fresh, 0.2)
    run = budgeted_ranking(fresh, lambda j: np.r_[target, 0.5][j], config)
    assert run.measured[0] == 20 == int(np.argmax(np.diag(zoo.covariance)))
    for k in range(1, 5):  # each next pass: the largest spread left after the passes before it
        _, std = zoo.posterior(run.measured[:k], run.values[:k], config.noise)
        std[run.measured[:k]] = -np.inf
        assert run.measured[k] == int(np.argmax(std))
    assert len(set(run.measured)) == 5 and weighted_tau(target, run.scores[:20]) > 0.9
    # the predicted best is not what it chases: the expected gain measures other models
    chasing = budgeted_ranking(fresh, lambda j: np.r_[target, 0.5][j], dataclasses.replace(config, selection="expected_gain"))
    assert chasing.measured != run.measured


def test_a_second_proxy_is_mapped_onto_the_first_ones_scale_over_the_measured_models():
    probe = np.array([0.5, 0.7, 0.6, 0.9])
    logme = np.array([-1.0, 0.5, -0.2, 2.0])
    np.testing.assert_allclose(combined_values(probe, 0.5), probe)  # one proxy: as measured
    np.testing.assert_allclose(combined_values(np.c_[probe, logme], 0.0), probe)
    np.testing.assert_allclose(combined_values(np.c_[probe[:1], logme[:1]], 0.5), probe[:1])  # one model: no scale
    np.testing.assert_allclose(combined_values(np.c_[probe, np.ones(4)], 0.5), probe)  # no spread: no opinion
    both = combined_values(np.c_[probe, logme], 0.5)
    mapped = 2 * both - probe  # the second proxy on the probe's scale: its mean and spread, LogME's order
    assert mapped.mean() == pytest.approx(probe.mean()) and mapped.std() == pytest.approx(probe.std())
    assert spearman(mapped, logme) == pytest.approx(1.0)
    # LogME's own scale does not matter (it changes from dataset to dataset): only its order and spacing
    np.testing.assert_allclose(combined_values(np.c_[probe, 40 * logme - 3], 0.5), both)


def test_two_proxies_of_one_pass_with_independent_errors_rank_better_than_the_first_alone():
    history = _history()
    target = np.linspace(0.3, 0.9, 20)[::-1] + 0.01 * np.sin(np.arange(20))
    alone, together = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        probe = target + rng.normal(scale=0.08, size=20)
        logme = 5.0 * target - 2.0 + rng.normal(scale=0.4, size=20)  # another scale, its own errors
        config = BudgetConfig(passes=20, method="gaussian", noise=0.05, shrinkage=0.2, second_weight=0.5)
        run = budgeted_ranking(history, lambda j: (probe[j], logme[j]), config)
        assert run.values == pytest.approx(probe[run.measured].tolist())  # what was measured, as it was
        assert run.second == pytest.approx(logme[run.measured].tolist())
        together.append(weighted_tau(target, run.scores))
        first = budgeted_ranking(history, lambda j: probe[j], dataclasses.replace(config, second_weight=0.0))
        alone.append(weighted_tau(target, first.scores))
    assert np.mean(together) > np.mean(alone) + 0.02
    with pytest.raises(ValueError, match="two values"):
        budgeted_ranking(history, lambda j: probe[j], BudgetConfig(passes=2, second_weight=0.5))


@pytest.mark.parametrize("change", [{"passes": -1}, {"measured_weight": 1.5}, {"strength": -1.0},
                                    {"selection": "random"}, {"method": "oracle"}, {"noise": 0.0},
                                    {"shrinkage": 2.0}, {"second_weight": 1.0}, {"second_weight": -0.1}])
def test_budget_config_rejects_nonsense(change):
    with pytest.raises(ValueError):
        dataclasses.replace(BudgetConfig(), **change)


@pytest.mark.parametrize("width", [16, 400])  # fewer features than images, and more
def test_linear_probe_is_the_cross_validated_ridge_classifier(width):
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ml_core.ground_truth.transferability import PROBE_ALPHAS

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    features = rng.normal(size=(200, width)) + 0.4 * np.eye(5)[labels] @ rng.normal(size=(5, width))
    reference = cross_val_score(make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=PROBE_ALPHAS)), features,
                                labels, cv=StratifiedKFold(4, shuffle=True, random_state=0)).mean()
    assert probe_accuracy(features, labels) == pytest.approx(reference, abs=1e-9)
    assert probe_accuracy(rng.normal(size=(200, width)), labels) < reference - 0.2  # noise features: near chance
    with pytest.raises(ValueError, match="at least 8 images"):
        probe_accuracy(features[:6], labels[:6])


def test_attribute_priors_rank_by_the_number_and_leave_unknowns_neutral():
    sizes = attribute_prior(np.array([1e5, 1e6, np.nan, 1e7]), log=True)
    np.testing.assert_allclose(sizes, [5.0, 6.0, 6.0, 7.0])
    np.testing.assert_allclose(attribute_prior(np.array([np.nan, np.nan])), [0.0, 0.0])


def test_evaluation_reports_the_priors_the_probe_and_a_budget_curve_chosen_on_validation(monkeypatch):
    data = _toy_data(n_models=10)
    data = dataclasses.replace(data, probe=data.accuracy + 0.01, model_sizes=np.arange(1, 11) * 1e5,
                               source_accuracy=np.r_[np.linspace(0.5, 0.9, 9), np.nan])
    monkeypatch.setattr(evaluation, "train_ranker", lambda corpus, config, families=None: (_Prior(corpus), None))
    folds = leave_family_out_folds(data.dataset_names, data.families, val_families=1)
    config = EvaluationConfig(budget_strengths=(1.0,), budget_blends=(0.0, 1.0), budget_noises=(0.02,),
                              budget_shrinkages=(0.2,))
    result = evaluate(data, folds, config, variants={"p": None})
    rows = result.rows
    methods = set(rows["method"])
    assert {"prior_size", "prior_source_accuracy", "probe", "best_prior"} <= methods
    assert {f"budget@{k}" for k in range(3)} <= methods and "budget@3" not in methods  # a fifth of 10
    assert {"budget:probe:expected_gain:mixture@1", "budget:probe:top:gaussian@2", "budget:logme:top:mixture@2",
            "budget:probe:uncertainty:gaussian@2", "budget:logme:uncertainty:mixture@1"} <= methods
    assert not any(m.startswith("budget:logme") and "gaussian" in m for m in methods)  # LogME is no accuracy
    assert not any(m.startswith(evaluation.BUDGET_GRID) for m in methods)  # the grid is kept as its choice
    assert (rows.loc[rows["method"] == "budget@2", "forward_passes"] == 2).all()
    prior = rows[rows["method"] == "prior"].set_index(["fold", "dataset"])["weighted_tau_truth"]
    zero = rows[rows["method"] == "budget@0"].set_index(["fold", "dataset"])["weighted_tau_truth"]
    pd.testing.assert_series_equal(prior.sort_index(), zero.sort_index())
    # the probe reads the truth (plus a constant) here: measuring with it and trusting it beats the prior
    probe_rule = result.rows[result.rows["method"] == "budget:probe:top:gaussian@2"]
    assert probe_rule["weighted_tau_truth"].mean() > rows.loc[rows["method"] == "prior", "weighted_tau_truth"].mean()
    assert result.selected_priors["family"] in evaluation.PRIORS
    # the all-pass methods, and the one validation prefers as the bar for a budget (leave-family-out only)
    assert {"probe+prior", "probe+logme+prior", "best_all_pass"} <= methods
    assert result.selected_all_pass in evaluation.ALL_PASS
    bar = rows[rows["method"] == "best_all_pass"]
    assert set(bar["protocol"]) == {"family"} and (bar["forward_passes"] == 10).all()
    chosen_bar = rows[(rows["method"] == result.selected_all_pass) & (rows["protocol"] == "family")]
    assert sorted(bar["weighted_tau_truth"]) == sorted(chosen_bar["weighted_tau_truth"])
    rule = result.selected_budget.split(" ")[0]
    assert rule.split(":")[0] in ("probe", "logme", "probe+logme") and f"budget:{rule}@1" in methods
    # both proxies of one pass: read on the probe's accuracy scale, so the Gaussian only
    assert {"budget:probe+logme:expected_gain:gaussian@2", "budget:probe+logme:uncertainty:gaussian@1"} <= methods
    assert not any(m.startswith("budget:probe+logme") and "mixture" in m for m in methods)


class _Prior:  # a stand-in trained ranker: the fold's data-free prior
    def __init__(self, corpus):
        train = [i for i, d in enumerate(corpus.dataset_names) if corpus.splits[d] == "train"]
        self.prior = data_free_prior(corpus.accuracy[train])

    def score(self, tokens, model_tokens, model_names, model_sources=None):
        return self.prior


def test_the_budget_and_prior_choices_ignore_test_rows():
    def rows(method, val, test):
        return [{"protocol": "family", "fold": "f", "split": split, "method": method, "weighted_tau_truth": v,
                 "dataset": "d", "_accuracy": np.array([0.1, 0.2, 0.3]), "_scores": np.array([1.0, 3.0, 2.0])}
                for split, v in (("val", val), ("test", test))]

    frame = pd.DataFrame(rows(f"{evaluation.BUDGET_GRID}:probe:top:mixture:s1:b0@1", 0.6, 0.0)
                         + rows(f"{evaluation.BUDGET_GRID}:probe:top:mixture:s2:b0@1", 0.4, 0.9)
                         + rows("prior", 0.1, 0.9) + rows("prior_size", 0.3, 0.0))
    reported, chosen, scores = evaluation.select_budget(frame)
    assert "_scores" not in reported and set(reported["method"]) == {"budget:probe:top:mixture@1", "budget@1",
                                                                     "budget@0"}
    chosen_rows = reported[reported["method"] == "budget@1"]  # every metric, from the scores it kept
    assert chosen_rows["spearman"].tolist() == pytest.approx([0.5, 0.5])
    assert chosen == "probe:top:mixture (s1:b0)"
    assert scores == pytest.approx({"probe:top:mixture:s1:b0": 0.6, "probe:top:mixture:s2:b0": 0.4})
    best, priors = evaluation.select_priors(frame)
    assert priors == {"family": "prior_size"} and set(best["method"]) == {"best_prior"}
    frame = pd.DataFrame(rows("probe", 0.2, 0.9) + rows("probe+prior", 0.5, 0.1) + rows("logme", 0.4, 0.9))
    bar, chosen = evaluation.select_all_pass(frame)
    assert chosen == "probe+prior" and bar["weighted_tau_truth"].tolist() == [0.5, 0.1]
