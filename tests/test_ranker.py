"""Ranker, listwise loss, temperature schedule, combined loader, splits and the prior."""

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ml_core.images import DatasetTokens
from ml_core.ranking import (
    FEATURE_NAMES,
    ModelTokenNormalizer,
    RankerArtifact,
    RankerConfig,
    RankerTrainingConfig,
    RankingCorpus,
    RankingCrossAttentionTransformer,
    TemperatureSchedule,
    assign_dataset_splits,
    build_combined_similarity_loader,
    list_mle_loss,
    pairwise_logistic_loss,
    train_ranker,
)
from ml_core.ranking.baselines import data_free_prior
from ml_core.trainer import TrainerConfig


def _ranker(dd=6, dm=5):
    torch.manual_seed(0)
    return RankingCrossAttentionTransformer(
        RankerConfig(dataset_token_dim=dd, model_token_dim=dm, d_model=16, nhead=2, dim_feedforward=32, dropout=0.0)
    ).eval()


def test_forward_shapes_and_padding_is_ignored():
    model = _ranker()
    data = torch.randn(2, 7, 6)
    models = torch.randn(2, 4, 5)
    dmask = torch.ones(2, 7, dtype=torch.bool)
    dmask[1, 5:] = False
    mmask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    scores = model(data, models, dmask, mmask)
    assert scores.shape == (2, 4)
    assert scores[1, 3] == 0.0  # a padded model gets no score
    # changing padded dataset tokens or a padded model token changes nothing else
    data2, models2 = data.clone(), models.clone()
    data2[1, 5:] = 1e3
    models2[1, 3] = -1e3
    scores2 = model(data2, models2, dmask, mmask)
    torch.testing.assert_close(scores2, scores, atol=1e-5, rtol=1e-5)


def test_scores_are_permutation_equivariant_in_models():
    model = _ranker()
    data, models = torch.randn(1, 5, 6), torch.randn(1, 4, 5)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(model(data, models[:, perm])[0], model(data, models)[0][perm], atol=1e-5, rtol=1e-5)


def _plackett_luce_nll(scores, order):
    total = 0.0
    for i in range(len(order)):
        rest = scores[order[i:]]
        total += math.log(np.exp(rest).sum()) - scores[order[i]]
    return total / len(order)


def test_list_mle_equals_plackett_luce_and_ignores_masked_models():
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.5]])
    truth = torch.tensor([[0.9, 0.1, 0.5, 0.7]])
    mask = torch.tensor([[True, True, True, False]])
    expected = _plackett_luce_nll(scores[0].numpy(), [0, 2, 1])  # true order among unmasked
    assert list_mle_loss(scores, truth, mask).item() == pytest.approx(expected, rel=1e-6)
    # the loss is smallest when scores follow the true order
    losses = {p: list_mle_loss(torch.tensor([p], dtype=torch.float), truth[:, :3], mask[:, :3]).item()
              for p in itertools.permutations([3.0, 2.0, 1.0])}
    assert min(losses, key=losses.get) == (3.0, 1.0, 2.0)
    assert pairwise_logistic_loss(torch.tensor([[3.0, 1.0, 2.0]]), truth[:, :3], mask[:, :3]) < pairwise_logistic_loss(
        torch.tensor([[1.0, 3.0, 2.0]]), truth[:, :3], mask[:, :3]
    )


def test_temperature_advances_only_when_stepped():
    schedule = TemperatureSchedule(start=2.0, end=0.5, steps=10)
    assert schedule.value == 2.0
    for _ in range(10):
        schedule.step()
    assert schedule.value == pytest.approx(0.5)
    schedule.step()
    assert schedule.value == pytest.approx(0.5)


def _tokens(rng, n_rows, n_classes, dim, shift):
    features = rng.normal(size=(n_rows, n_classes, dim)).astype(np.float32) + shift
    valid = np.ones((n_rows, n_classes), dtype=bool)
    valid[-1, 1:] = False  # padding in the last row
    features[~valid] = 0
    return DatasetTokens(features=features, valid=valid, class_names=[f"c{i}" for i in range(n_classes)], attrs={})


def _corpus(n_datasets=8, n_models=5, seed=0):
    """Datasets whose tokens encode which model is best: a learnable toy world."""
    rng = np.random.default_rng(seed)
    model_tokens = rng.normal(size=(n_models, 4)).astype(np.float32)
    names = [f"d{i}" for i in range(n_datasets)]
    tokens, accuracy = {}, []
    for i, name in enumerate(names):
        direction = rng.normal(size=4)
        tokens[name] = _tokens(rng, 4, 3, 6, shift=np.r_[direction, 0, 0].astype(np.float32))
        accuracy.append(0.5 + 0.1 * np.tanh(model_tokens @ direction))
    accuracy = np.array(accuracy)
    accuracy[0, 2] = np.nan  # one unknown result
    splits = {n: ("train" if i < 6 else "val") for i, n in enumerate(names)}
    return RankingCorpus([f"m{j}" for j in range(n_models)], model_tokens, names, tokens, accuracy, splits)


def test_loader_batch_has_the_documented_keys_shapes_and_masks():
    corpus = _corpus()
    normalizer = ModelTokenNormalizer.fit(corpus.model_tokens)
    loader = build_combined_similarity_loader(corpus, splits=("train",), model_normalizer=normalizer, batch_size=3, max_rows=4)
    batch = next(iter(loader))
    assert batch["batch_size"] == 3
    assert batch["dataset_tokens"].shape[0] == 3 and batch["dataset_tokens"].shape[2] == 6
    assert batch["model_tokens"].shape == (3, 5, 4)
    assert batch["true_ranks"].shape == batch["true_scores"].shape == batch["model_mask"].shape == (3, 5)
    assert batch["dataset_names"] == ["d0", "d1", "d2"] and batch["dataset_splits"] == ["train"] * 3
    assert batch["model_names"] == [f"m{j}" for j in range(5)]
    assert batch["model_indices"][0].tolist() == list(range(5))
    # d0's unknown model is masked and has rank -1; the mask counts exactly the valid image slots
    assert not batch["model_mask"][0, 2] and batch["true_ranks"][0, 2] == -1
    assert batch["dataset_mask"][0].sum() == 4 * 3 - 2
    ranks = batch["true_ranks"][1].numpy()
    acc = corpus.accuracy[1]
    assert ranks[np.argmax(acc)] == 0 and ranks[np.argmin(acc)] == 4


def test_training_lowers_the_ranking_loss_and_artifact_round_trips(tmp_path):
    corpus = _corpus()
    config = RankerTrainingConfig(
        model=RankerConfig(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0), max_rows=4, batch_size=3,
        trainer=TrainerConfig(epochs=30, lr=3e-3, scheduler="none", early_stopping_patience=None),
    )
    artifact, history = train_ranker(corpus, config, tmp_path)
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    artifact.save(tmp_path / "r")
    loaded = RankerArtifact.load(tmp_path / "r")
    tokens = corpus.dataset_tokens["d7"]
    np.testing.assert_allclose(loaded.score(tokens, corpus.model_tokens), artifact.score(tokens, corpus.model_tokens), atol=1e-6)


def test_splits_keep_families_together_and_are_seeded():
    names = [f"d{i}" for i in range(9)]
    families = {"d0": "a", "d1": "a", "d2": "a", "d3": "b", "d4": "b"}
    splits = assign_dataset_splits(names, families=families, seed=1)
    assert len({splits[n] for n in ("d0", "d1", "d2")}) == 1 and splits["d3"] == splits["d4"]
    assert set(splits.values()) == {"train", "val", "test"}
    assert splits == assign_dataset_splits(names, families=families, seed=1)
    assert assign_dataset_splits(["x", "y"], seed=0) == {"x": "train", "y": "train"}


def test_prior_is_mean_normalised_training_performance():
    train = np.array([[0.9, 0.5, 0.1], [0.6, 0.8, 0.4], [np.nan, 0.2, 0.3]])
    prior = data_free_prior(train)
    # per-row min-max: [1, .5, 0], [.5, 1, 0], [nan, 0, 1] -> means [.75, .5, 1/3]
    np.testing.assert_allclose(prior, [0.75, 0.5, 1 / 3])


def test_cross_attention_ranker_with_baseline_features_round_trips(tmp_path):
    corpus = _corpus()
    families = {name: f"fam{i // 2}" for i, name in enumerate(corpus.dataset_names)}
    config = RankerTrainingConfig(
        model=RankerConfig(d_model=16, nhead=2, dim_feedforward=32, architecture="cross_attention",
                           baseline_features=True),
        token_mode="class_means", loss="pairwise", model_dropout=0.3,
        trainer=TrainerConfig(epochs=5, lr=3e-3, scheduler="none", early_stopping_patience=None),
    )
    artifact, history = train_ranker(corpus, config, tmp_path, families=families)
    assert artifact.reference is not None and artifact.reference.dataset_names == corpus.datasets_in(("train",))
    artifact.save(tmp_path / "r")
    loaded = RankerArtifact.load(tmp_path / "r")
    tokens = corpus.dataset_tokens["d7"]
    expected = artifact.score(tokens, corpus.model_tokens, corpus.model_names)
    np.testing.assert_allclose(loaded.score(tokens, corpus.model_tokens, corpus.model_names), expected, atol=1e-6)
    with pytest.raises(ValueError, match="model_names"):
        loaded.score(tokens, corpus.model_tokens)
    history = loaded.history(["m1", "new", "m0"])  # the training results, aligned; a new model: unknown
    train_rows = [corpus.dataset_names.index(d) for d in corpus.datasets_in(("train",))]
    np.testing.assert_allclose(history[:, [0, 2]], corpus.accuracy[np.ix_(train_rows, [1, 0])])
    assert np.isnan(history[:, 1]).all()


def test_residual_init_starts_as_the_sum_of_the_baseline_features():
    torch.manual_seed(0)
    config = RankerConfig(dataset_token_dim=6, model_token_dim=5, d_model=16, nhead=2, dim_feedforward=32,
                          dropout=0.0, architecture="cross_attention", baseline_features=True, residual_init=True)
    model = RankingCrossAttentionTransformer(config).eval()
    features = torch.randn(2, 4, len(FEATURE_NAMES))
    scores = model(torch.randn(2, 7, 6), torch.randn(2, 4, 5), model_features=features)
    torch.testing.assert_close(scores, features.sum(-1))  # zero correction: the baselines' order exactly
    plain = RankingCrossAttentionTransformer(replace(config, residual_init=False)).eval()
    assert not torch.allclose(plain(torch.randn(2, 7, 6), torch.randn(2, 4, 5), model_features=features), features.sum(-1))


def test_residual_ranker_validates_its_starting_point(tmp_path):
    corpus = _corpus()
    families = {name: f"fam{i // 2}" for i, name in enumerate(corpus.dataset_names)}
    config = RankerTrainingConfig(
        model=RankerConfig(d_model=16, nhead=2, dim_feedforward=32, architecture="cross_attention",
                           baseline_features=True, residual_init=True),
        token_mode="class_means", loss="pairwise",
        trainer=TrainerConfig(epochs=2, lr=3e-3, scheduler="none", early_stopping_patience=None),
    )
    _, history = train_ranker(corpus, config, tmp_path, families=families)
    assert [r["epoch"] for r in history.epochs] == [0, 1, 2]  # the untrained start was a candidate
    assert (tmp_path / "loss_curves.png").exists()


def test_linear_ranker_needs_features_and_scores_their_weighted_sum():
    with pytest.raises(ValueError, match="baseline_features"):
        RankingCrossAttentionTransformer(RankerConfig(dataset_token_dim=6, model_token_dim=5, architecture="linear"))
    model = RankingCrossAttentionTransformer(
        RankerConfig(dataset_token_dim=6, model_token_dim=5, architecture="linear", baseline_features=True, residual_init=True)
    )
    features = torch.randn(2, 4, len(FEATURE_NAMES))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    scores = model(torch.randn(2, 7, 6), torch.randn(2, 4, 5), None, mask, features)
    expected = features.sum(-1).masked_fill(~mask, 0.0)
    torch.testing.assert_close(scores, expected)


def test_linear_ranker_learns_to_follow_the_source_similarity(tmp_path):
    """Accuracy = how close a dataset is to each model's pre-training sample: the learned weighting must
    find that (feature 2) and rank a validation dataset by it, also for models it never saw trained."""
    rng = np.random.default_rng(0)
    n_models, dim = 6, 6
    sources = rng.normal(size=(n_models, dim))
    sources /= np.linalg.norm(sources, axis=1, keepdims=True)
    names = [f"d{i}" for i in range(10)]
    tokens, accuracy = {}, []
    for name in names:
        direction = rng.normal(size=dim)
        direction /= np.linalg.norm(direction)
        tokens[name] = _tokens(rng, 4, 3, dim, shift=(8 * direction).astype(np.float32))
        accuracy.append(0.5 + 0.3 * sources @ direction)
    splits = {n: ("train" if i < 7 else "val") for i, n in enumerate(names)}
    corpus = RankingCorpus([f"m{j}" for j in range(n_models)], rng.normal(size=(n_models, 4)).astype(np.float32),
                           names, tokens, np.array(accuracy), splits, model_sources=sources)
    families = {n: n for n in names}
    config = RankerTrainingConfig(model=RankerConfig(architecture="linear", baseline_features=True), loss="pairwise",
                                  token_mode="class_means",
                                  trainer=TrainerConfig(epochs=40, lr=0.05, scheduler="none", early_stopping_patience=None))
    artifact, _ = train_ranker(corpus, config, tmp_path, families=families)
    weights = artifact.model.skip.weight.detach().numpy()[0]
    assert weights[2] > 2 * max(abs(weights[0]), abs(weights[1]))  # source similarity carries the order
    from ml_core.metrics import spearman

    for name in names[7:]:
        scores = artifact.score(tokens[name], corpus.model_tokens, ["new"] * n_models, sources)  # no history at all
        assert spearman(corpus.accuracy_of([name])[0], scores) > 0.9


def test_history_dropout_shows_a_list_as_new_models_and_leaves_the_rest():
    from ml_core.ranking import HISTORY_FEATURES, baseline_reference, with_baseline_features

    corpus = _corpus()
    families = {name: f"fam{i // 2}" for i, name in enumerate(corpus.dataset_names)}
    config = RankerTrainingConfig(model=RankerConfig(architecture="linear", baseline_features=True))
    corpus = with_baseline_features(corpus, baseline_reference(corpus, families, config), families)
    normalizer = ModelTokenNormalizer.fit(corpus.model_tokens)

    def features(history_dropout):
        loader = build_combined_similarity_loader(corpus, splits=("train",), model_normalizer=normalizer, batch_size=6,
                                                  history_dropout=history_dropout)
        return next(iter(loader))["model_features"]

    plain, dropped = features(0.0), features(1.0)
    history = list(HISTORY_FEATURES)
    others = [i for i in range(len(FEATURE_NAMES)) if i not in history]
    assert plain[..., history].abs().sum() > 0 and dropped[..., history].abs().sum() == 0  # every list looks new
    torch.testing.assert_close(dropped[..., others], plain[..., others])  # source and weight neighbours untouched
    torch.testing.assert_close(features(0.0), plain)  # the augmentation changed a copy, never the corpus
