"""Rankers trained on sampled tasks beside the real training datasets, on leave-family-out folds.

A :class:`TaskPool` holds tasks drawn once over a world's datasets (:mod:`ml_core.ranking.tasks`), their
dataset tokens and their proxy labels (:mod:`ml_core.ranking.proxies`). A fold uses only the pool's tasks
drawn from its TRAINING datasets (:meth:`TaskPool.for_fold`; :func:`with_tasks` refuses any other), so no
image of a validation or test dataset reaches a training list. The proxy that labels them is chosen per
fold by its agreement with the fine-tune truth on the fold's training and validation datasets
(:func:`~ml_core.ranking.proxies.select_proxy`); the real datasets keep their measured accuracies.

:func:`evaluate_task_fold` trains each ranker variant with each :class:`TaskSetting` (number of tasks,
mixtures or class subsets only, their share of the training lists) and scores the fold's validation and
test datasets, beside the three data-free priors (``best_prior`` is chosen on validation later,
:func:`~ml_core.evaluation.evaluation.select_priors`). Validation chooses among the settings; the test
rows only report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_core.evaluation.evaluation import EvaluationData, _fold_corpus, _report
from ml_core.evaluation.folds import Fold
from ml_core.images import DatasetTokens
from ml_core.ranking import RankerTrainingConfig, RankingCorpus, train_ranker
from ml_core.ranking.baselines import attribute_prior, data_free_prior
from ml_core.ranking.proxies import SlotFeatures, dataset_slots, proxy_tables, select_proxy
from ml_core.ranking.tasks import SampledTask, task_slots, task_tokens

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSetting:
    """How many sampled tasks a fold's ranker trains on (0: the real datasets only), whether mixtures of
    datasets are among them (else class subsets of one dataset only), and their share of each epoch."""

    n_tasks: int = 0
    mixtures: bool = True
    task_share: float = 0.5

    @property
    def name(self) -> str:
        if not self.n_tasks:
            return "tasks=0"
        return f"tasks={self.n_tasks}:{'mixtures' if self.mixtures else 'subsets'}:share={self.task_share:g}"


@dataclass
class TaskPool:
    """Tasks with their tokens and proxy labels ``labels[proxy] (T, N)`` over ``model_names``."""

    tasks: list[SampledTask]
    tokens: dict[str, DatasetTokens]
    labels: dict[str, np.ndarray]
    model_names: list[str]

    def for_fold(self, fold: Fold, setting: TaskSetting) -> list[int]:
        """Indices of the first ``setting.n_tasks`` tasks (mixtures allowed or not) drawn only from the
        fold's training datasets; fewer when the pool has fewer."""
        train = set(fold.train)
        chosen = [i for i, t in enumerate(self.tasks)
                  if set(t.sources) <= train and (setting.mixtures or t.kind == "subset")]
        return chosen[: setting.n_tasks]


def task_pool(tasks: Sequence[SampledTask], dataset_tokens: Mapping[str, DatasetTokens], features: SlotFeatures,
              model_names: Sequence[str]) -> TaskPool:
    """The tasks' tokens (subsets of their datasets' tokens) and every proxy's labels from ``features``."""
    labels = proxy_tables([task_slots(t) for t in tasks], features, model_names, desc="proxy labels (tasks)")
    return TaskPool(list(tasks), {t.name: task_tokens(t, dataset_tokens) for t in tasks}, labels, list(model_names))


def dataset_proxies(data: EvaluationData, features: SlotFeatures) -> dict[str, np.ndarray]:
    """Every proxy on every real dataset's token images, ``{proxy: (D, N)}`` aligned with ``data``."""
    sets = [dataset_slots(d, data.dataset_tokens[d]) for d in data.dataset_names]
    return proxy_tables(sets, features, data.model_names, desc="proxy labels (datasets)")


def with_tasks(corpus: RankingCorpus, pool: TaskPool, indices: Sequence[int], proxy: str, fold: Fold) -> RankingCorpus:
    """``corpus`` with the pool's tasks ``indices`` as lists of split ``task``, labelled by ``proxy``.
    Raises ``ValueError`` if a task reads a dataset that is not one of the fold's training datasets."""
    tasks = [pool.tasks[i] for i in indices]
    outside = sorted({d for t in tasks for d in t.sources} - set(fold.train))
    if outside:
        raise ValueError(f"fold {fold.name}: sampled tasks read {outside}, which are not its training datasets")
    if not tasks:
        return corpus
    columns = [pool.model_names.index(m) for m in corpus.model_names]
    labels = pool.labels[proxy][np.ix_(list(indices), columns)]
    names = [t.name for t in tasks]
    return dataclasses.replace(
        corpus,
        dataset_names=corpus.dataset_names + names,
        dataset_tokens={**corpus.dataset_tokens, **{n: pool.tokens[n] for n in names}},
        accuracy=np.concatenate([corpus.accuracy, labels]),
        splits={**corpus.splits, **{n: "task" for n in names}},
        task_sources={**corpus.task_sources, **{t.name: t.sources for t in tasks}},
    )


def fold_proxy(proxies: Mapping[str, np.ndarray], data: EvaluationData, fold: Fold) -> tuple[str, dict[str, float]]:
    """The proxy that agrees best with the truth on the fold's training and validation datasets."""
    rows = [data.row(d) for d in (*fold.train, *fold.val)]
    return select_proxy(proxies, data.accuracy, rows)


def evaluate_task_fold(
    data: EvaluationData,
    fold: Fold,
    pool: TaskPool,
    proxies: Mapping[str, np.ndarray],
    settings: Sequence[TaskSetting],
    variants: Mapping[str, RankerTrainingConfig],
    proxy: str | None = None,
) -> list[dict[str, Any]]:
    """Rows (one per validation / test dataset and method) of a leave-family-out fold: the three data-free
    priors and ``ranker:<variant>|<setting>`` for every variant and setting. ``proxy`` (None: chosen per fold
    by :func:`fold_proxy`) labels the tasks."""
    if fold.kind != "family" or fold.held_out_models:
        raise ValueError(f"{fold.name}: sampled tasks are evaluated on leave-family-out folds only")
    chosen, proxy_scores = fold_proxy(proxies, data, fold)
    proxy = proxy or chosen
    all_models = list(data.model_names)
    seen = list(range(len(all_models)))
    corpus = _fold_corpus(data, fold, data.model_tokens, seen)
    train_acc = data.accuracy[[data.row(d) for d in fold.train]]
    methods: dict[str, np.ndarray | Any] = {"prior": data_free_prior(train_acc)}
    if data.model_sizes is not None:
        methods["prior_size"] = attribute_prior(data.model_sizes, log=True)
    if data.source_accuracy is not None:
        methods["prior_source_accuracy"] = attribute_prior(data.source_accuracy)
    used = {}
    for setting in settings:
        indices = pool.for_fold(fold, setting)
        used[setting.name] = len(indices)
        extended = with_tasks(corpus, pool, indices, proxy, fold)
        for name, variant in variants.items():
            artifact, _ = train_ranker(extended, dataclasses.replace(variant, task_share=setting.task_share),
                                       families=data.families)
            methods[f"ranker:{name}|{setting.name}"] = artifact
    rows = []
    for split, datasets in (("val", fold.val), ("test", fold.test)):
        for dataset in datasets:
            acc = data.accuracy[data.row(dataset)]
            if np.sum(~np.isnan(acc)) < 2:
                continue
            base = {"protocol": "family", "fold": fold.name, "dataset": dataset, "split": split,
                    "family": data.families.get(dataset, dataset), "n_models": len(all_models), "proxy": proxy,
                    "forward_passes": 0, "seconds": 0.0}
            for method, scorer in methods.items():
                scores = scorer if isinstance(scorer, np.ndarray) else scorer.score(
                    data.dataset_tokens[dataset], data.model_tokens, all_models, data.model_sources)
                setting = method.split("|", 1)[1] if "|" in method else ""
                rows.append({**base, "method": method, "n_tasks_used": used.get(setting, 0), **_report(acc, scores)})
    logger.info("fold %s: proxy %s (%s), tasks used %s", fold.name, proxy, proxy_scores, used)
    return rows
