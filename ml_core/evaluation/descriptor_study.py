"""Which dataset descriptor carries a zoo ranking across dataset families? (issue 15, item 4)

For each leave-family-out fold and each descriptor of :mod:`ml_core.ranking.descriptors` (and each learned
metric over one, ``learned:<descriptor>``), the nearest-dataset ranking of every validation and test
dataset: the similarity-weighted results of its ``k`` most similar TRAINING datasets
(:func:`~ml_core.ranking.baselines.neighbour_scores`; ``k = 0``: all of them, a kernel regression over the
performance table). The similarity is fitted on the fold's training datasets only
(:func:`fit_similarity`); ``k``, the temperature and the learned metric's ridge are chosen per fold by the
mean weighted tau on its VALIDATION datasets; the test family is described (its own tokens) and ranked,
never fitted on nor chosen by. Rows beside them, on the same datasets: the three data-free priors (and
``best_prior``, chosen on validation by :func:`~ml_core.evaluation.evaluation.select_priors`),
``nearest_fixed:mean`` (today's baseline, k = 3, temperature 0.05) and ``oracle_nearest`` (reads the test
truth: the ceiling of neighbour rankings, not a method).

Each nearest row of a held-out dataset also says how good its single nearest training dataset is
(the diagnostic of "carries across families"): ``nn_agreement``, the Spearman correlation of that
dataset's results with the held-out one's truth; ``nn_percentile``, where that agreement stands among all
the training datasets' (0.5: a random pick); ``nn_top3``, whether it is one of the three that agree best.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_core.evaluation.evaluation import (
    EvaluationData,
    _report,
    oracle_neighbour_scores,
    select_priors,
)
from ml_core.evaluation.folds import Fold
from ml_core.metrics import weighted_tau
from ml_core.progress import progress
from ml_core.ranking.baselines import attribute_prior, data_free_prior, neighbour_scores
from ml_core.ranking.descriptors import DESCRIPTORS, DescriptorSpace, LearnedMetric, rank_agreement
from ml_core.ranking.proxies import select_proxy

LEARNED = "learned:"
#: a metric learned on the fold's training datasets AND sampled tasks of them (labelled by a proxy)
LEARNED_TASKS = "learned_tasks:"
Similarity = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class NeighbourGrid:
    """What validation chooses from per fold and method: ``ks`` neighbours (0: every training dataset),
    softmax ``temperatures`` over the similarity, and the learned metric's ``ridges``."""

    ks: tuple[int, ...] = (1, 2, 3, 5, 8, 0)
    temperatures: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    ridges: tuple[float, ...] = (0.1, 1.0, 10.0)


@dataclass
class TaskExamples:
    """Sampled tasks (:mod:`ml_core.ranking.tasks`) as examples for a learned metric: each task's source
    datasets, its descriptors ``vectors[descriptor] (E, d)``, its proxy labels ``labels[proxy] (E, N)``, and
    every proxy on the real datasets ``dataset_proxies[proxy] (D, N)`` (aligned with the evaluation data), by
    which each fold chooses its proxy on its training and validation datasets. ``max_tasks``: the first that
    many tasks drawn from a fold's training datasets are used."""

    sources: list[tuple[str, ...]]
    vectors: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    dataset_proxies: dict[str, np.ndarray]
    max_tasks: int = 500

    def for_fold(self, fold: Fold) -> list[int]:
        """The tasks whose every source is one of the fold's TRAINING datasets (at most ``max_tasks``)."""
        train = set(fold.train)
        return [i for i, s in enumerate(self.sources) if set(s) <= train][: self.max_tasks]


def base_descriptor(method: str) -> str:
    """The registered descriptor a method reads (``learned:x`` and ``learned_tasks:x`` read ``x``)."""
    return method.removeprefix(LEARNED_TASKS).removeprefix(LEARNED)


def fit_similarity(method: str, reference: Mapping[str, np.ndarray], accuracy: np.ndarray,
                   families: Sequence[str], ridge: float, extra: tuple[np.ndarray, np.ndarray, list] | None = None,
                   ) -> Similarity:
    """``target vector -> (T,)`` similarities to the ``reference`` datasets (a fold's TRAINING datasets, in
    order, with their ``accuracy (T, N)`` rows and families); fitted on them alone, and for a learned metric
    on ``extra`` examples too: ``(vectors (E, d), labels (E, N), families of each (E sets))``, sampled tasks
    of those training datasets."""
    space = DescriptorSpace.for_descriptor(base_descriptor(method), np.stack(list(reference.values())))
    if method.startswith((LEARNED, LEARNED_TASKS)):
        vectors, labels, groups = extra if extra is not None else (None, None, ())
        return LearnedMetric(space, accuracy, list(families), ridge=ridge, extra_vectors=vectors,
                             extra_labels=labels, extra_groups=groups).similarity
    return space.similarity


def _tau(accuracy: np.ndarray, scores: np.ndarray) -> float:
    """Truth-ordered weighted tau over the known models (a constant ranking: 0), as the evaluation reports it."""
    known = ~np.isnan(accuracy)
    return weighted_tau(accuracy[known], scores[known]) if np.ptp(scores[known]) > 0 else 0.0


def neighbour_diagnostic(sims: np.ndarray, truth: np.ndarray, train_accuracy: np.ndarray) -> dict[str, float]:
    """How good the single most similar training dataset is for a held-out one (see the module doc)."""
    agreement = np.array([rank_agreement(truth, row) for row in train_accuracy])
    nearest = int(np.argmax(sims))
    mine = agreement[nearest]
    percentile = (np.sum(agreement < mine) + 0.5 * (np.sum(agreement == mine) - 1)) / max(len(agreement) - 1, 1)
    top3 = np.argsort(-agreement, kind="stable")[:3]
    return {"nn_agreement": float(mine), "nn_percentile": float(percentile), "nn_top3": float(nearest in top3)}


def evaluate_descriptor_fold(
    data: EvaluationData,
    fold: Fold,
    vectors: Mapping[str, Mapping[str, np.ndarray]],
    methods: Sequence[str],
    grid: NeighbourGrid | None = None,
    fixed_k: int = 3,
    fixed_temperature: float = 0.05,
    tasks: TaskExamples | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Rows for every method on the fold's validation and test datasets, and each method's chosen setting
    (``k``, ``temperature``, ``ridge``, its validation score). ``vectors[descriptor][dataset]``: each
    dataset's descriptor (a pure function of its own tokens). ``tasks``: the sampled tasks the
    ``learned_tasks:`` methods learn from (only those of the fold's training datasets are used)."""
    grid = grid or NeighbourGrid()
    train = list(fold.train)
    train_acc = data.accuracy[[data.row(d) for d in train]]
    train_families = [data.families.get(d, d) for d in train]
    held = [("val", d) for d in fold.val] + [("test", d) for d in fold.test]
    truth = {d: data.accuracy[data.row(d)] for _, d in held}
    rows: list[dict[str, Any]] = []

    def add(split: str, dataset: str, method: str, scores: np.ndarray, **extra: float) -> None:
        rows.append({"protocol": "family", "fold": fold.name, "dataset": dataset, "split": split,
                     "family": data.families.get(dataset, dataset), "method": method,
                     **_report(truth[dataset], scores), **extra})

    prior = data_free_prior(train_acc)
    for split, d in held:
        add(split, d, "prior", prior)
        if data.model_sizes is not None:
            add(split, d, "prior_size", attribute_prior(data.model_sizes, log=True))
        if data.source_accuracy is not None:
            add(split, d, "prior_source_accuracy", attribute_prior(data.source_accuracy))
        add(split, d, "oracle_nearest", oracle_neighbour_scores(truth[d], train_acc, fixed_k, fixed_temperature))

    choices: dict[str, dict[str, float]] = {}
    task_index, proxy = [], ""
    if tasks is not None and any(m.startswith(LEARNED_TASKS) for m in methods):
        task_index = tasks.for_fold(fold)
        proxy, _ = select_proxy(tasks.dataset_proxies, data.accuracy, [data.row(d) for d in (*fold.train, *fold.val)])
    for method in methods:
        base = base_descriptor(method)
        reference = {d: vectors[base][d] for d in train}
        ridges = grid.ridges if method.startswith((LEARNED, LEARNED_TASKS)) else (0.0,)
        extra = None
        if method.startswith(LEARNED_TASKS):
            if tasks is None:
                raise ValueError(f"{method} needs sampled tasks")
            extra = (tasks.vectors[base][task_index], tasks.labels[proxy][task_index],
                     [{data.families.get(d, d) for d in tasks.sources[i]} for i in task_index])
        sims = {}
        for ridge in ridges:
            similarity = fit_similarity(method, reference, train_acc, train_families, ridge, extra)
            sims[ridge] = {d: similarity(vectors[base][d]) for _, d in held}
        best, best_score = None, -np.inf
        for ridge, k, temperature in itertools.product(ridges, grid.ks, grid.temperatures):
            taus = [_tau(truth[d], neighbour_scores(sims[ridge][d], train_acc, k=k or len(train), temperature=temperature))
                    for d in fold.val]
            score = float(np.mean(taus)) if taus else 0.0
            if score > best_score + 1e-12:
                best, best_score = (ridge, k, temperature), score
        ridge, k, temperature = best
        choices[method] = {"ridge": ridge, "k": k, "temperature": temperature, "validation": best_score}
        if extra is not None:
            choices[method] |= {"tasks": len(task_index), "proxy": proxy}
        for split, d in held:
            scores = neighbour_scores(sims[ridge][d], train_acc, k=k or len(train), temperature=temperature)
            add(split, d, f"nearest:{method}", scores, **neighbour_diagnostic(sims[ridge][d], truth[d], train_acc))
            if method == "mean":  # today's baseline as the product runs it
                add(split, d, "nearest_fixed:mean",
                    neighbour_scores(sims[ridge][d], train_acc, k=fixed_k, temperature=fixed_temperature))
    return rows, choices


def evaluate_descriptors(
    data: EvaluationData,
    folds: Sequence[Fold],
    vectors: Mapping[str, Mapping[str, np.ndarray]],
    methods: Sequence[str],
    grid: NeighbourGrid | None = None,
    tasks: TaskExamples | None = None,
) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, float]]], dict[str, str]]:
    """Every fold's rows (with ``best_prior``), the settings chosen per fold and method, and the prior chosen."""
    rows, choices = [], {}
    for fold in progress(folds, desc="descriptor folds"):
        fold_rows, choices[fold.name] = evaluate_descriptor_fold(data, fold, vectors, methods, grid, tasks=tasks)
        rows.extend(fold_rows)
    frame = pd.DataFrame(rows)
    best_prior, chosen = select_priors(frame)
    return pd.concat([frame, best_prior], ignore_index=True), choices, chosen


def known_methods(learned: Sequence[str] = ("separability", "separability+task2vec"), with_tasks: bool = False,
                  ) -> list[str]:
    """Every registered descriptor, then a learned metric over each of ``learned`` (and, ``with_tasks``, the
    same learned on sampled tasks too)."""
    out = [*DESCRIPTORS, *(f"{LEARNED}{name}" for name in learned)]
    return out + [f"{LEARNED_TASKS}{name}" for name in learned] if with_tasks else out
