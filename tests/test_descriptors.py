"""Dataset descriptors: what each is invariant to, what it tells apart, and that the study never fits on a test family."""

import dataclasses

import numpy as np
import pytest

import ml_core.evaluation.descriptor_study as study
from ml_core.evaluation import EvaluationData, leave_family_out_folds
from ml_core.evaluation.descriptor_study import NeighbourGrid, TaskExamples, evaluate_descriptor_fold, known_methods
from ml_core.images import DatasetTokens
from ml_core.ranking.descriptors import (
    DESCRIPTORS,
    SCATTER_NAMES,
    SEPARABILITY_NAMES,
    DescriptorSpace,
    LearnedMetric,
    _agreements,
    describe,
    describe_all,
    fit_metric_weights,
    metric_pairs,
    rank_agreement,
)
from ml_core.ranking.tasks import TaskSamplerConfig, sample_tasks, task_tokens


def _tokens(separation=1.0, classes=5, rows=12, dim=16, seed=0, offset=None) -> DatasetTokens:
    """Classes around random means ``separation`` apart (unit noise); the last rows of class 0 missing."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)) * separation
    features = means[None] + rng.normal(size=(rows, classes, dim))
    if offset is not None:
        features = features + offset
    valid = np.ones((rows, classes), bool)
    valid[-3:, 0] = False
    features = (features * valid[..., None]).astype(np.float32)
    return DatasetTokens(features, valid, [f"c{k}" for k in range(classes)], {})


def _same(a, b, tol=1e-6):
    return np.allclose(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
def test_a_descriptor_ignores_class_order_row_order_and_invalid_slots(name):
    tokens = _tokens()
    ref = describe(name, tokens)
    rng = np.random.default_rng(1)
    order = rng.permutation(tokens.valid.shape[1])
    by_class = DatasetTokens(tokens.features[:, order], tokens.valid[:, order],
                             [tokens.class_names[i] for i in order], {})
    assert _same(describe(name, by_class), ref)
    features, valid = tokens.features.copy(), tokens.valid.copy()
    for c in range(valid.shape[1]):  # each class's rows shuffled on their own
        perm = rng.permutation(valid.shape[0])
        features[:, c], valid[:, c] = features[perm, c], valid[perm, c]
    assert _same(describe(name, DatasetTokens(features, valid, tokens.class_names, {})), ref)
    garbage = tokens.features.copy()
    garbage[~tokens.valid] = np.nan  # an invalid slot is never read
    assert _same(describe(name, DatasetTokens(garbage, tokens.valid, tokens.class_names, {})), ref)
    assert np.all(np.isfinite(ref))


@pytest.mark.parametrize("name", [n for n, d in DESCRIPTORS.items() if d.count_invariant])
def test_a_count_invariant_descriptor_is_the_same_with_every_image_repeated(name):
    tokens = _tokens()
    tripled = DatasetTokens(np.concatenate([tokens.features] * 3), np.concatenate([tokens.valid] * 3),
                            tokens.class_names, {})
    assert _same(describe(name, tripled), describe(name, tokens), tol=1e-9)


def test_the_shots_enter_separability_but_not_scatter():
    few, many = _tokens(rows=8, seed=4), _tokens(rows=40, seed=4)
    shots = SEPARABILITY_NAMES.index("log_shots")
    sep_few, sep_many = describe("separability", few), describe("separability", many)
    assert sep_many[shots] - sep_few[shots] > 1.0
    assert len(describe("scatter", few)) == len(SCATTER_NAMES)


def test_separable_and_overlapping_classes_give_different_separability():
    apart, overlap = _tokens(separation=3.0), _tokens(separation=0.05)
    for name in ("ncm_loo_kappa", "nn1_loo_kappa", "log_fisher_ratio"):
        i = SEPARABILITY_NAMES.index(name)
        assert describe("separability", apart)[i] > describe("separability", overlap)[i] + 0.5, name
    kappa = SEPARABILITY_NAMES.index("ncm_loo_kappa")
    assert describe("separability", apart)[kappa] > 0.9 and abs(describe("separability", overlap)[kappa]) < 0.4
    # the Fisher of a confident probe is small: the separable task has less of it in total
    assert describe("task2vec", apart)[-1] < describe("task2vec", overlap)[-1] - 0.5


def test_the_same_task_elsewhere_in_the_encoder_space_keeps_its_class_statistics_but_not_its_mean():
    tokens = _tokens(separation=1.0, dim=16, offset=3.0)
    q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(16, 16)))  # a rotation: another family's images
    rotated = DatasetTokens((tokens.features.astype(np.float64) @ q).astype(np.float32), tokens.valid,
                            tokens.class_names, {})
    for name in ("scatter", "separability"):
        assert _same(describe(name, rotated), describe(name, tokens), tol=1e-4), name
    assert describe("mean", rotated) @ describe("mean", tokens) < 0.9
    assert describe("task2vec", rotated).shape == describe("task2vec", tokens).shape


def test_tasks_of_different_class_counts_have_descriptors_of_one_size_and_edge_cases_do_not_fail():
    for name in DESCRIPTORS:
        sizes = {describe(name, _tokens(classes=c)).shape for c in (2, 5, 9)}
        assert len(sizes) == 1, name
    single = DatasetTokens(np.ones((3, 1, 4), np.float32), np.ones((3, 1), bool), ["only"], {})
    lonely = _tokens(classes=3)
    lonely.valid[1:, 2] = False  # a class with one image
    for name in DESCRIPTORS:
        assert np.all(np.isfinite(describe(name, single))), name
        assert np.all(np.isfinite(describe(name, lonely))), name
    with pytest.raises(ValueError, match="no valid"):
        describe("scatter", DatasetTokens(np.zeros((2, 2, 4), np.float32), np.zeros((2, 2), bool), ["a", "b"], {}))
    with pytest.raises(KeyError, match="unknown dataset descriptor"):
        describe("nope", lonely)


def test_the_space_is_fitted_on_its_reference_and_weighs_blocks_equally():
    rng = np.random.default_rng(0)
    reference = np.column_stack([rng.normal(size=20) * 100, np.ones(20), rng.normal(size=(20, 4))])
    space = DescriptorSpace(reference, blocks=(2, 4))
    z = space.transform(reference)
    assert np.allclose(z[:, 0].std(), 1 / np.sqrt(2)) and np.allclose(z[:, 1], 0)  # constant dimension dropped
    assert np.allclose(z[:, 2:].std(0), 1 / 2)
    assert np.argmax(space.similarity(reference[5])) == 5
    plain = DescriptorSpace(reference[:, 2:], standardise=False)
    assert np.allclose(plain.transform(reference[:3, 2:]), reference[:3, 2:])
    with pytest.raises(ValueError, match="blocks"):
        DescriptorSpace(reference, blocks=(3, 4))


def test_the_learned_metric_weighs_the_dimension_that_predicts_agreement_across_families():
    rng = np.random.default_rng(0)
    n, models = 24, 30
    kind = rng.normal(size=n)  # what decides which models win
    noise = rng.normal(size=n)
    base = rng.normal(size=models)
    slope = rng.normal(size=models)
    accuracy = base + np.outer(kind, slope) + 0.1 * rng.normal(size=(n, models))
    space = DescriptorSpace(np.column_stack([kind, noise]))
    families = [f"f{i // 2}" for i in range(n)]
    metric = LearnedMetric(space, accuracy, families, ridge=0.01)
    assert metric.weights[0] > 5 * metric.weights[1]
    sims = metric.similarity(np.array([kind[0], -noise[0]]))
    assert np.argmax(sims) == 0


def _world():
    families = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c", "d1": "d", "e1": "e", "f1": "f"}
    names = sorted(families)
    tokens = {d: _tokens(separation=0.5 + i * 0.3, classes=3 + i % 3, rows=8, dim=8, seed=i) for i, d in enumerate(names)}
    rng = np.random.default_rng(3)
    models = [f"m{j}" for j in range(6)]
    accuracy = rng.uniform(0.2, 0.9, size=(len(names), len(models)))
    data = EvaluationData(model_names=models, dataset_names=names, accuracy=accuracy, families=families,
                          dataset_tokens=tokens, model_tokens=np.eye(6), model_sizes=np.arange(1.0, 7.0),
                          source_accuracy=rng.uniform(size=6))
    return data


def _task_examples(data, names):
    tasks = sample_tasks(data.dataset_names, data.dataset_tokens, TaskSamplerConfig(n_tasks=60, min_shots=2, seed=1))
    rng = np.random.default_rng(5)
    n = len(data.model_names)
    vectors = {name: np.stack([describe(name, task_tokens(t, data.dataset_tokens)) for t in tasks]) for name in names}
    labels = {p: rng.uniform(size=(len(tasks), n)) for p in ("probe", "logme")}
    proxies = {p: rng.uniform(size=data.accuracy.shape) for p in ("probe", "logme")}
    return TaskExamples([t.sources for t in tasks], vectors, labels, proxies, max_tasks=40)


def test_no_image_row_or_label_of_a_test_family_reaches_fitting_the_metric_or_the_choice(monkeypatch):
    data = _world()
    methods = known_methods(learned=("separability",), with_tasks=True)
    fold = leave_family_out_folds(data.dataset_names, data.families, val_families=1)[0]  # family a is test
    names = sorted(DESCRIPTORS)
    vectors = describe_all(names, data.dataset_tokens)
    tasks = _task_examples(data, names)
    assert any(set(s) & set(fold.test) for s in tasks.sources)  # the pool has tasks of the test family
    grid = NeighbourGrid(ks=(1, 0), temperatures=(0.1, 1.0), ridges=(0.1, 1.0))
    fitted, proxy_rows = [], []
    real_fit, real_select = study.fit_similarity, study.select_proxy

    def fit_spy(method, reference, accuracy, families, ridge, extra=None):
        fitted.append((method, list(reference), accuracy.copy(), extra))
        return real_fit(method, reference, accuracy, families, ridge, extra)

    def select_spy(tables, accuracy, rows):
        proxy_rows.append(list(rows))
        return real_select(tables, accuracy, rows)

    monkeypatch.setattr(study, "fit_similarity", fit_spy)
    monkeypatch.setattr(study, "select_proxy", select_spy)
    rows, choices = evaluate_descriptor_fold(data, fold, vectors, methods, grid, tasks=tasks)
    train_acc = data.accuracy[[data.row(d) for d in fold.train]]
    train_families = {data.families[d] for d in fold.train}
    assert {m for m, _, _, _ in fitted} == set(methods)
    for method, reference, accuracy, extra in fitted:  # the fit sees the training datasets, their rows, nothing else
        assert reference == list(fold.train) and np.array_equal(accuracy, train_acc)
        if method.startswith("learned_tasks:"):
            assert len(extra[0]) > 0 and all(g <= train_families for g in extra[2])  # tasks of training families only
    assert proxy_rows and all(not set(r) & {data.row(d) for d in fold.test} for r in proxy_rows)
    assert choices["learned_tasks:separability"]["tasks"] == len(tasks.for_fold(fold))
    assert {r["method"] for r in rows} >= {f"nearest:{m}" for m in methods} | {"prior", "oracle_nearest",
                                                                               "nearest_fixed:mean"}

    # the test family changed in every way (images, descriptors, truth, its tasks and their labels):
    # the choices and the validation rows are the same
    changed = dataclasses.replace(data, accuracy=data.accuracy.copy(), dataset_tokens=dict(data.dataset_tokens))
    for d in fold.test:
        changed.accuracy[data.row(d)] = 1.0 - changed.accuracy[data.row(d)]
        changed.dataset_tokens[d] = _tokens(separation=5.0, classes=7, rows=8, dim=8, seed=99)
    changed_vectors = describe_all(names, changed.dataset_tokens)
    touched = [i for i, s in enumerate(tasks.sources) if set(s) & set(fold.test)]
    changed_tasks = dataclasses.replace(tasks, vectors={k: v.copy() for k, v in tasks.vectors.items()},
                                        labels={k: v.copy() for k, v in tasks.labels.items()},
                                        dataset_proxies={k: v.copy() for k, v in tasks.dataset_proxies.items()})
    for v in (*changed_tasks.vectors.values(), *changed_tasks.labels.values()):
        v[touched] = -v[touched]
    for v in changed_tasks.dataset_proxies.values():
        v[[data.row(d) for d in fold.test]] = -v[[data.row(d) for d in fold.test]]
    again, choices_again = evaluate_descriptor_fold(changed, fold, changed_vectors, methods, grid, tasks=changed_tasks)
    assert choices_again == choices
    val = lambda rs: [(r["method"], r["dataset"], r["weighted_tau_truth"]) for r in rs if r["split"] == "val"]  # noqa: E731
    assert val(again) == val(rows)
    assert [r["weighted_tau_truth"] for r in again if r["split"] == "test"] != \
        [r["weighted_tau_truth"] for r in rows if r["split"] == "test"]


def test_agreement_is_spearman_and_only_pairs_of_disjoint_families_teach_the_metric():
    rng = np.random.default_rng(2)
    labels = rng.normal(size=(6, 9))
    labels[2, :3] = labels[2, 0]  # ties
    fast = _agreements(labels)
    assert np.allclose(fast, [[rank_agreement(a, b) for b in labels] for a in labels])
    groups = [frozenset("a"), frozenset("a"), frozenset("b"), frozenset("bc"), frozenset("cd"), frozenset("e")]
    i, j = metric_pairs(groups)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {
        (0, 2), (0, 3), (0, 4), (0, 5), (1, 2), (1, 3), (1, 4), (1, 5), (2, 4), (2, 5), (3, 5), (4, 5)}
    # one family only: no pair to learn from, every dimension weighs the same
    weights, intercept = fit_metric_weights(rng.normal(size=(4, 3)), labels[:4], [frozenset("a")] * 4, ridge=1.0)
    assert np.allclose(weights, 1 / 3) and intercept == 0.0
