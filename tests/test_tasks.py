"""Sampled training tasks: the sampler, their tokens, proxy labels, and that no held-out data reaches them."""

import dataclasses

import numpy as np
import pytest

import ml_core.evaluation.sampled as sampled
from ml_core.evaluation import EvaluationData, leave_family_out_folds
from ml_core.evaluation.folds import Fold
from ml_core.evaluation.sampled import TaskSetting, evaluate_task_fold, task_pool, with_tasks
from ml_core.ground_truth.transferability import logme, loo_probe_accuracy
from ml_core.images import DatasetTokens
from ml_core.ranking import BaselineReference, RankerConfig, RankerTrainingConfig
from ml_core.ranking.data import EpochMix, tasks_per_epoch
from ml_core.ranking.proxies import (
    dataset_slots,
    proxy_agreement,
    proxy_tables,
    select_proxy,
    task_logme,
    thin_features,
)
from ml_core.ranking.tasks import (
    SampledTask,
    TaskClass,
    TaskSamplerConfig,
    sample_fold_tasks,
    sample_tasks,
    task_slots,
    task_tokens,
    tasks_within,
)
from ml_core.trainer import TrainerConfig

FAMILIES = {"a1": "a", "a2": "a", "b1": "b", "c1": "c", "d1": "d", "e1": "e"}
SHAPES = {"a1": (6, 3), "a2": (5, 2), "b1": (8, 4), "c1": (4, 2), "d1": (7, 3), "e1": (6, 5)}


def _tokens(seed=0) -> dict[str, DatasetTokens]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (rows, classes) in SHAPES.items():
        valid = np.ones((rows, classes), bool)
        valid[-1, 0] = False  # a class with one image fewer, as in a real dataset
        features = rng.normal(size=(rows, classes, 8)).astype(np.float32) * valid[..., None]
        out[name] = DatasetTokens(features, valid, [f"{name}_c{k}" for k in range(classes)], {})
    return out


def test_the_sampler_is_seeded_recorded_and_reads_only_the_datasets_it_is_given():
    tokens = _tokens()
    config = TaskSamplerConfig(n_tasks=200, mixture_share=0.5, min_shots=2, seed=3)
    tasks = sample_tasks(["a1", "b1", "d1", "e1"], tokens, config)
    assert tasks == sample_tasks(["e1", "d1", "b1", "a1"], tokens, config)  # seeded, order-free
    assert tasks[:50] == sample_tasks(["a1", "b1", "d1", "e1"], tokens, dataclasses.replace(config, n_tasks=50))
    assert [SampledTask.from_dict(t.to_dict()) for t in tasks] == tasks  # recorded whole
    assert {d for t in tasks for d in t.sources} <= {"a1", "b1", "d1", "e1"}
    kinds = {t.kind for t in tasks}
    assert kinds == {"subset", "mixture"}
    for t in tasks:
        datasets = {c.dataset for c in t.classes}
        assert datasets == set(t.sources)  # every source gives at least one class
        assert len(t.classes) >= 2 and len({(c.dataset, c.column) for c in t.classes}) == len(t.classes)
        if t.kind == "subset":
            assert len(t.sources) == 1 and len(t.classes) <= SHAPES[t.sources[0]][1]
        else:
            assert 2 <= len(t.sources) <= 4
        for c in t.classes:
            assert len(c.rows) == t.shots and tokens[c.dataset].valid[list(c.rows), c.column].all()
    available = [min(tokens[c.dataset].valid[:, c.column].sum() for c in t.classes) for t in tasks]
    assert any(t.shots == a for t, a in zip(tasks, available)) and min(t.shots for t in tasks) <= 3  # few to all
    subsets_only = sample_tasks(["a1", "b1"], tokens, dataclasses.replace(config, mixture_share=0.0))
    assert {t.kind for t in subsets_only} == {"subset"}


def test_a_fold_draws_from_its_training_datasets_only_and_a_leaking_fold_is_refused():
    tokens = _tokens()
    fold = Fold("family:a", "family", train=("b1", "c1", "d1"), val=("e1",), test=("a1", "a2"))
    tasks = sample_fold_tasks(fold, tokens, TaskSamplerConfig(n_tasks=100, min_shots=2))
    assert {d for t in tasks for d in t.sources} <= set(fold.train)
    with pytest.raises(ValueError, match="both training and held out"):
        sample_fold_tasks(dataclasses.replace(fold, train=("b1", "a1")), tokens, TaskSamplerConfig())
    pool = sample_tasks(list(SHAPES), tokens, TaskSamplerConfig(n_tasks=100, min_shots=2))
    assert all(set(t.sources) <= set(fold.train) for t in tasks_within(pool, fold.train))


def test_a_tasks_tokens_are_the_rows_of_its_datasets_tokens_laid_out_as_a_dataset():
    tokens = _tokens()
    task = next(t for t in sample_tasks(list(SHAPES), tokens, TaskSamplerConfig(n_tasks=50, min_shots=2))
                if t.kind == "mixture")
    made = task_tokens(task, tokens)
    assert made.features.shape == (task.shots, len(task.classes), 8) and made.valid.all()
    for k, c in enumerate(task.classes):
        np.testing.assert_array_equal(made.features[:, k], tokens[c.dataset].features[list(c.rows), c.column])
    slots, labels = task_slots(task)
    assert len(slots) == task.n_images and np.bincount(labels).tolist() == [task.shots] * len(task.classes)
    # a subset with every shot of its classes has exactly its dataset's class means
    whole = SampledTask("t", "subset", ("b1",), tuple(TaskClass("b1", k, f"b1_c{k}", tuple(range(8))) for k in (1, 3)),
                        8, 0)
    np.testing.assert_allclose(task_tokens(whole, tokens).class_means(), tokens["b1"].class_means()[[1, 3]], rtol=1e-6)


def test_thin_features_keep_logme_exactly_and_proxies_prefer_features_that_separate_the_classes():
    rng = np.random.default_rng(0)
    wide, labels = rng.normal(size=(30, 200)), np.repeat([0, 1, 2], 10)
    assert thin_features(wide).shape == (30, 30)
    assert logme(thin_features(wide), labels) == pytest.approx(logme(wide, labels), rel=1e-9)
    narrow = wide[:, :12] + labels[:, None]
    for x in (wide, narrow):  # every class's fixed point at once: the product's LogME
        assert task_logme(x, labels) == pytest.approx(logme(x, labels), rel=1e-9)
    tokens = _tokens()
    features = {}
    for d, t in tokens.items():  # model "good": its features are the class index plus a little noise
        rows, classes = t.valid.shape
        good = np.broadcast_to(np.arange(classes)[None, :, None], (rows, classes, 4)) + rng.normal(
            scale=0.1, size=(rows, classes, 4))
        features[d] = {"good": good.astype(np.float32), "noise": rng.normal(size=(rows, classes, 4)).astype(np.float32)}
    tables = proxy_tables([dataset_slots(d, tokens[d]) for d in ("b1", "e1")], features, ["noise", "good", "absent"])
    for name in ("probe", "logme", "aggregate"):
        assert (tables[name][:, 1] > tables[name][:, 0]).all(), name
        assert np.isnan(tables[name][:, 2]).all()  # a model without features has no label


def test_the_leave_one_out_probe_is_the_ridge_refit_without_each_image():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 7)
    features = rng.normal(size=(21, 5)) + 0.7 * labels[:, None]
    separable = rng.normal(size=(21, 5)) + 3.0 * np.eye(3, 5)[labels]
    x = (features - features.mean(0)) / (features.std(0) + 1e-8)
    target = (labels[:, None] == np.arange(3)) * 2.0 - 1.0
    correct = 0
    for i in range(21):  # ridge with an unpenalised intercept, fit on the 20 others
        keep = np.arange(21) != i
        xm, tm = x[keep].mean(0), target[keep].mean(0)
        xc = x[keep] - xm
        coef = np.linalg.solve(xc.T @ xc + 10.0 * np.eye(5), xc.T @ (target[keep] - tm))
        correct += int(np.argmax((x[i] - xm) @ coef + tm) == labels[i])
    assert loo_probe_accuracy(features, labels, alphas=(10.0,)) == pytest.approx(correct / 21)
    assert loo_probe_accuracy(separable, labels) > 0.9 > loo_probe_accuracy(rng.normal(size=(21, 5)), labels)


def test_the_proxy_is_chosen_on_the_rows_it_is_given_only():
    truth = np.array([[0.1, 0.5, 0.9], [0.9, 0.5, 0.1], [0.2, 0.4, 0.6]])
    good_on_first = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    good_on_second = good_on_first[:, ::-1].copy()
    tables = {"x": good_on_first, "y": good_on_second}
    assert select_proxy(tables, truth, [0, 2])[0] == "x"
    assert select_proxy(tables, truth, [1])[0] == "y"
    assert proxy_agreement(good_on_first, truth)["spearman"].tolist() == [1.0, -1.0, 1.0]


def test_epochs_show_every_real_list_once_and_cycle_through_the_tasks():
    mix = EpochMix(n_real=5, n_tasks=12, per_epoch=tasks_per_epoch(5, 0.5), seed=0)
    seen_tasks = []
    for _ in range(3):
        epoch = list(mix)
        assert len(epoch) == len(mix) == 10 and sorted(i for i in epoch if i < 5) == [0, 1, 2, 3, 4]
        seen_tasks += [i for i in epoch if i >= 5]
    assert len(set(seen_tasks[:10])) == 10 and set(seen_tasks) == set(range(5, 17))  # each once before repeats
    with pytest.raises(ValueError):
        tasks_per_epoch(5, 1.0)


def test_a_task_mixing_families_leaves_all_of_them_out_of_its_baseline_reference():
    reference = BaselineReference(["a1", "b1", "c1"], ["m0", "m1"], np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]]),
                                  np.eye(3), {"a1": "a", "b1": "b", "c1": "c"}, k=1)
    only_c = reference.features(np.array([1.0, 0.0, 0.0]), ["m0", "m1"], {"a", "b"})
    assert only_c[:, :2].tolist() == [[0.0, 0.0], [0.0, 0.0]]  # c1's tie is all that is left: neutral
    assert reference.features(np.array([1.0, 0.0, 0.0]), ["m0", "m1"], "b")[0, 1] > 0  # a1 is still there


def _toy_data(tokens, seed=0, n_models=5) -> EvaluationData:
    rng = np.random.default_rng(seed)
    names = list(FAMILIES)
    accuracy = rng.uniform(0.2, 0.9, size=(len(names), n_models))
    return EvaluationData(
        model_names=[f"m{i}" for i in range(n_models)], dataset_names=names, accuracy=accuracy, families=FAMILIES,
        dataset_tokens=tokens, model_tokens=rng.normal(size=(n_models, 4)).astype(np.float32),
        model_sizes=rng.uniform(1e4, 1e6, n_models), source_accuracy=rng.uniform(0.5, 0.9, n_models),
    )


def test_no_image_task_or_row_of_a_test_family_reaches_sampling_labels_selection_or_training(monkeypatch):
    tokens = _tokens()
    data = _toy_data(tokens)
    rng = np.random.default_rng(1)
    features = {d: {m: rng.normal(size=(*t.valid.shape, 3)).astype(np.float32) for m in data.model_names}
                for d, t in tokens.items()}
    pool_tasks = sample_tasks(data.dataset_names, tokens, TaskSamplerConfig(n_tasks=120, min_shots=2))
    pool = task_pool(pool_tasks, tokens, features, data.model_names)
    proxies = proxy_tables([dataset_slots(d, tokens[d]) for d in data.dataset_names], features, data.model_names)
    fold = leave_family_out_folds(data.dataset_names, data.families, val_families=1)[0]  # holds out family a
    held_out = set(fold.test) | set(fold.val)

    corpora, selection_rows = [], []
    real_train, real_select = sampled.train_ranker, sampled.select_proxy

    def train_spy(corpus, config, out_dir=None, families=None):
        corpora.append(corpus)
        return real_train(corpus, config, out_dir, families)

    def select_spy(tables, accuracy, rows):
        selection_rows.append(list(rows))
        return real_select(tables, accuracy, rows)

    monkeypatch.setattr(sampled, "train_ranker", train_spy)
    monkeypatch.setattr(sampled, "select_proxy", select_spy)
    fast = RankerTrainingConfig(model=RankerConfig(d_model=8, nhead=2, dim_feedforward=16, baseline_features=True),
                                token_mode="class_means", trainer=TrainerConfig(epochs=2, scheduler="none"))
    settings = [TaskSetting(0), TaskSetting(20, mixtures=True), TaskSetting(20, mixtures=False, task_share=0.8)]
    rows = evaluate_task_fold(data, fold, pool, proxies, settings, {"v": fast})

    test_rows = {data.row(d) for d in fold.test}
    assert selection_rows and all(not set(r) & test_rows for r in selection_rows)  # proxy selection: never test
    assert len(corpora) == 3
    for corpus in corpora:
        assert not set(corpus.dataset_names) & set(fold.test)  # no test row, no test token set
        tasks = corpus.datasets_in(("task",))
        assert not set(corpus.datasets_in(("train",))) & held_out
        for name in tasks:  # a task reads training datasets' images only, and is labelled from them
            task = pool.tasks[[t.name for t in pool.tasks].index(name)]
            assert set(corpus.task_sources[name]) <= set(fold.train)
            assert {c.dataset for c in task.classes} <= set(fold.train)
    assert len(corpora[1].datasets_in(("task",))) == 20
    assert {pool.tasks[[t.name for t in pool.tasks].index(n)].kind for n in corpora[2].datasets_in(("task",))} == {"subset"}
    methods = {r["method"] for r in rows}
    assert {"prior", "prior_size", "prior_source_accuracy", "ranker:v|tasks=0",
            "ranker:v|tasks=20:mixtures:share=0.5", "ranker:v|tasks=20:subsets:share=0.8"} <= methods
    assert {r["split"] for r in rows} == {"val", "test"}

    # changing everything about the test family (its truth and its images' proxies) changes nothing
    changed = dataclasses.replace(data, accuracy=data.accuracy.copy())
    changed.accuracy[sorted(test_rows)] = 1.0 - changed.accuracy[sorted(test_rows)]
    changed_proxies = {k: v.copy() for k, v in proxies.items()}
    for v in changed_proxies.values():
        v[sorted(test_rows)] = -v[sorted(test_rows)]
    again = evaluate_task_fold(changed, fold, pool, changed_proxies, settings[:1], {"v": fast})
    val = lambda rs: [r["weighted_tau_truth"] for r in rs if r["split"] == "val"]  # noqa: E731
    assert val(again) == val([r for r in rows if r["method"] in {r2["method"] for r2 in again}])
    # a task from a test dataset is refused outright
    leaking = [i for i, t in enumerate(pool.tasks) if set(t.sources) & set(fold.test)][:1]
    with pytest.raises(ValueError, match="not its training datasets"):
        with_tasks(corpora[0], pool, leaking, "probe", fold)
