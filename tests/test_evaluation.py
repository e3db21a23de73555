"""Held-out evaluation: folds keep data out, baselines on known answers, no leakage into training."""

import numpy as np
import pytest

import ml_core.evaluation.evaluation as evaluation
from ml_core.evaluation import (
    EvaluationConfig,
    EvaluationData,
    evaluate,
    leave_dataset_out_folds,
    leave_family_out_folds,
    leave_models_out_folds,
    paired_differences,
    subsample_training_families,
)
from ml_core.images import DatasetTokens
from ml_core.ranking import BaselineReference, RankerConfig, RankerTrainingConfig
from ml_core.ranking.baselines import nearest_dataset_scores
from ml_core.trainer import TrainerConfig

FAMILIES = {"a1": "a", "a2": "a", "b1": "b", "c1": "c", "d1": "d", "e1": "e"}


def test_leave_family_out_holds_each_family_out_once_and_never_splits_it():
    folds = leave_family_out_folds(list(FAMILIES), FAMILIES, val_families=1, seed=3)
    assert sorted(f.name for f in folds) == [f"family:{k}" for k in "abcde"]
    for fold in folds:
        assert not set(fold.train) & set(fold.test) and not set(fold.val) & set(fold.test)
        assert not set(fold.train) & set(fold.val)
        assert set(fold.train) | set(fold.val) | set(fold.test) == set(FAMILIES)
        for group in ("train", "val", "test"):
            fams = {FAMILIES[d] for d in getattr(fold, group)}
            for other in {"train", "val", "test"} - {group}:
                assert not fams & {FAMILIES[d] for d in getattr(fold, other)}
    assert folds == leave_family_out_folds(list(FAMILIES), FAMILIES, val_families=1, seed=3)


def test_leave_models_out_groups_are_disjoint_and_cover_the_zoo():
    models = [f"m{i}" for i in range(10)]
    folds = leave_models_out_folds(models, list(FAMILIES), FAMILIES, n_folds=3, val_families=1, seed=0)
    held = [set(f.held_out_models) for f in folds]
    assert set().union(*held) == set(models) and sum(len(h) for h in held) == len(models)
    for fold in folds:
        assert fold.test and not set(fold.test) & (set(fold.train) | set(fold.val))


MANY = {**FAMILIES, "f1": "f", "f2": "f", "g1": "g", "h1": "h"}


def test_a_smaller_history_keeps_whole_training_families_and_the_held_out_data():
    fold = next(f for f in leave_family_out_folds(list(MANY), MANY, val_families=1, seed=0) if f.name == "family:b")
    n_families = len({MANY[d] for d in fold.train})
    for size in range(1, n_families):
        small = subsample_training_families(fold, MANY, size, seed=4)
        kept = {MANY[d] for d in small.train}
        assert len(kept) == size and kept <= {MANY[d] for d in fold.train}
        assert set(small.train) == {d for d in fold.train if MANY[d] in kept}  # families are never split
        assert (small.val, small.test, small.kind) == (fold.val, fold.test, fold.kind)
        assert small == subsample_training_families(fold, MANY, size, seed=4)  # seeded
    subsets = {subsample_training_families(fold, MANY, 2, seed=s).train for s in range(8)}
    assert len(subsets) > 1  # the seed chooses the subset
    assert subsample_training_families(fold, MANY, n_families, seed=4) == fold
    with pytest.raises(ValueError, match="at least 1"):
        subsample_training_families(fold, MANY, 0)


def test_leave_dataset_out_moves_only_the_relatives_into_training():
    family_folds = leave_family_out_folds(list(MANY), MANY, val_families=1, seed=0)
    folds = leave_dataset_out_folds(family_folds)
    assert sorted(f.name for f in folds) == ["dataset:a1", "dataset:a2", "dataset:f1", "dataset:f2"]
    for fold in folds:
        held = fold.test[0]
        family_fold = next(f for f in family_folds if held in f.test)
        assert fold.kind == "dataset" and fold.test == (held,) and fold.val == family_fold.val
        assert set(fold.train) - set(family_fold.train) == set(family_fold.test) - {held}


def test_nearest_dataset_follows_the_most_similar_training_dataset():
    train_desc = np.eye(3)
    accuracy = np.array([[0.9, 0.5, 0.1], [0.1, 0.5, 0.9], [0.5, 0.9, 0.1]])
    scores, sims = nearest_dataset_scores(np.array([0.0, 1.0, 0.0]), train_desc, accuracy, k=1)
    assert np.argmax(sims) == 1 and list(np.argsort(-scores)) == [2, 1, 0]


def test_baseline_features_of_a_training_dataset_ignore_its_own_family():
    accuracy = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])  # datasets x1, x2 (family x) and y1
    reference = BaselineReference(
        dataset_names=["x1", "x2", "y1"], model_names=["m0", "m1"], accuracy=accuracy,
        descriptors=np.eye(3), families={"x1": "x", "x2": "x", "y1": "y"}, k=1,
    )
    own = reference.features(np.array([1.0, 0.0, 0.0]), ["m0", "m1"], exclude_family="x")
    assert own[1, 0] > own[0, 0] and own[1, 1] > own[0, 1]  # only y1 is left: it prefers m1
    held_out = reference.features(np.array([1.0, 0.0, 0.0]), ["m0", "m1", "new"])
    assert held_out[0, 1] > held_out[1, 1] and held_out[2].tolist() == [0.0, 0.0, 0.0, 0.0]  # unknown model: neutral


def _toy_data(n_models=6, seed=0) -> EvaluationData:
    rng = np.random.default_rng(seed)
    names = list(FAMILIES)
    tokens = {}
    for d in names:
        features = rng.normal(size=(3, 2, 8)).astype(np.float32)
        tokens[d] = DatasetTokens(features=features, valid=np.ones((3, 2), bool), class_names=["a", "b"], attrs={})
    accuracy = rng.uniform(0.2, 0.9, size=(len(names), n_models))
    return EvaluationData(
        model_names=[f"m{i}" for i in range(n_models)], dataset_names=names, accuracy=accuracy, families=FAMILIES,
        dataset_tokens=tokens, model_tokens=rng.normal(size=(n_models, 4)).astype(np.float32),
        logme=accuracy + rng.normal(scale=0.05, size=accuracy.shape), h_score=rng.normal(size=accuracy.shape),
        forward_seconds=np.full(accuracy.shape, 0.5),
        model_sources=np.r_[rng.normal(size=(n_models - 1, 8)), np.full((1, 8), np.nan)],  # the last: no sample
    )


def test_evaluation_never_trains_on_held_out_datasets_or_models(monkeypatch):
    data = _toy_data()
    seen_corpora = []
    real_train = evaluation.train_ranker

    def spy(corpus, config, out_dir=None, families=None):
        seen_corpora.append(corpus)
        return real_train(corpus, config, out_dir, families)

    monkeypatch.setattr(evaluation, "train_ranker", spy)
    folds = leave_family_out_folds(data.dataset_names, data.families, val_families=1)
    folds += leave_models_out_folds(data.model_names, data.dataset_names, data.families, n_folds=2, val_families=1)
    fast = RankerTrainingConfig(model=RankerConfig(d_model=8, nhead=2, dim_feedforward=16, baseline_features=True),
                                token_mode="class_means", trainer=TrainerConfig(epochs=2, scheduler="none"))
    tokens_asked = []

    def tokens_without(held):
        tokens_asked.append(tuple(held))
        return data.model_tokens

    result = evaluate(data, folds, EvaluationConfig(), tokens_without, variants={"v": fast})
    for fold, corpus in zip(folds, seen_corpora, strict=True):
        assert not set(corpus.dataset_names) & set(fold.test)
        assert not set(corpus.model_names) & set(fold.held_out_models)
    assert tokens_asked == [f.held_out_models for f in folds if f.kind == "models"]
    rows = result.rows
    assert {"random", "prior", "nearest", "source_similarity", "nearest_source_profile",
            "logme", "h_score", "ranker", "two_stage",
            "two_stage_coverage", "two_stage_coverage:v", "oracle_nearest"} <= set(rows["method"])
    # the ceiling and the coverage shortlists need a history: leave-family-out only
    for method in ("oracle_nearest", "two_stage_coverage", "two_stage_coverage:v"):
        assert set(rows.loc[rows["method"] == method, "protocol"]) == {"family"}
    assert result.selected_shortlist in ("two_stage:v", "two_stage_coverage:v")
    assert set(rows.loc[rows["method"] == "two_stage", "protocol"]) == {"family", "models"}
    models_rows = rows[(rows["protocol"] == "models") & (rows["method"] == "prior")]
    assert (models_rows["weighted_tau_truth"] == 0).all()  # held-out models have no results: no prior
    two = rows[(rows["method"] == "two_stage") & (rows["protocol"] == "family")]
    assert (two["forward_passes"] == len(data.model_names) // 3).all()
    by_prior = rows[rows["method"] == "two_stage_prior"]
    assert set(by_prior["protocol"]) == {"family"}  # new models have no history to shortlist by
    assert (by_prior["forward_passes"] == len(data.model_names) // 3).all()
    assert result.selected_variant == "v"
    summary = result.summary("test")
    assert set(summary["protocol"]) == {"family", "models"}
    assert np.isfinite(summary["weighted_tau_truth_mean"]).all()


def test_paired_differences_pair_methods_by_fold():
    import pandas as pd

    rows = pd.DataFrame([
        {"protocol": "family", "fold": f, "method": m, "weighted_tau_truth": v}
        for f, prior, ranker in (("f1", 0.1, 0.3), ("f2", 0.5, 0.4), ("f3", 0.2, 0.5))
        for m, v in (("prior", prior), ("ranker", ranker))
    ])
    out = paired_differences(rows, "prior").set_index("method").loc["ranker"]
    diffs = np.array([0.2, -0.1, 0.3])
    assert out["mean_difference"] == pytest.approx(diffs.mean())
    assert out["standard_error"] == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    assert out["folds_better"] == 2 and out["n_folds"] == 3


def test_ensemble_averages_the_variants_z_scores_and_is_a_validation_candidate(monkeypatch):
    data = _toy_data()
    row_of = {id(tokens): data.row(d) for d, tokens in data.dataset_tokens.items()}

    class _Fixed:  # a stand-in trained ranker: ``scale`` x the dataset's true accuracies
        def __init__(self, scale):
            self.scale = scale

        def score(self, tokens, model_tokens, model_names, model_sources=None):
            return self.scale * data.accuracy[row_of[id(tokens)]]

    scales = {"same_order": 1.0, "reversed_and_larger": -4.0}  # a power of two: z-scores exactly opposite
    monkeypatch.setattr(evaluation, "train_ranker", lambda corpus, config, families=None: (_Fixed(scales[config]), None))
    folds = leave_family_out_folds(data.dataset_names, data.families, val_families=1)
    result = evaluate(data, folds, EvaluationConfig(), variants={name: name for name in scales})
    rows = result.rows
    by_method = rows.groupby("method")["weighted_tau_truth"]
    assert by_method.min()["ranker:same_order"] == pytest.approx(1.0)
    assert by_method.max()["ranker:reversed_and_larger"] == pytest.approx(-1.0)
    # z-scored first: +z and -z cancel to a constant (no information), not to the larger reversed one
    assert (rows.loc[rows["method"] == "ranker:ensemble", "weighted_tau_truth"] == 0).all()
    assert set(result.variant_validation) == {"same_order", "reversed_and_larger", "ensemble"}
    assert result.selected_variant == "same_order"
    assert evaluation.candidate_variants(["only"]) == ["only"]  # one variant: no ensemble of one


def test_oracle_neighbours_are_the_training_datasets_that_order_models_like_the_truth():
    train = np.array([[0.9, 0.5, 0.1], [0.1, 0.5, 0.9], [0.2, 0.9, 0.5]])
    truth = np.array([0.2, 0.6, 0.8])  # ordered like training dataset 1
    scores = evaluation.oracle_neighbour_scores(truth, train, k=1, temperature=0.05)
    assert list(np.argsort(-scores)) == [2, 1, 0]
    assert np.isfinite(evaluation.oracle_neighbour_scores(np.array([0.5, np.nan, 0.1]), train, 2, 0.05)).all()


def test_selection_averages_both_protocols_validation_and_ignores_test_rows():
    import pandas as pd

    def rows(method, family, models, test):
        return [{"protocol": p, "fold": f"{p}:0", "split": split, "method": method, "weighted_tau_truth": v}
                for p, split, v in (("family", "val", family), ("models", "val", models), ("family", "test", test))]

    frame = pd.DataFrame(rows("ranker:a", 0.6, 0.0, 0.9) + rows("ranker:b", 0.4, 0.4, 0.1))
    best, scores = evaluation.select_variant(frame, ["a", "b"])
    assert best == "b" and scores == pytest.approx({"a": 0.3, "b": 0.4})  # a is useless on new models
    only_family = frame[frame["protocol"] == "family"]
    assert evaluation.select_variant(only_family, ["a", "b"])[0] == "a"
