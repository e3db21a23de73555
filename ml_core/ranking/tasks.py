"""Sampled training tasks (Model Spider style): many ranking lists from a few real datasets.

A *task* is a labelled image set carved out of the token slots of real datasets that were already
encoded (:class:`~ml_core.images.DatasetTokens`: one image per class per row):

* ``subset``: 2..C classes of one dataset, with a few to all of its shots;
* ``mixture``: classes of 2-4 datasets together, relabelled as one task.

A task's dataset tokens are a subset of those rows and columns, ``(shots, K, D)`` with the same
``valid`` semantics as a real dataset's (no new encoder pass), so the ranker reads a task exactly as
it reads a dataset. Its ranking label comes from cheap proxies of the zoo models on the same images
(:mod:`ml_core.ranking.proxies`), never from a fine-tune.

Sampling is seeded and recorded: every task keeps its sources, its classes (dataset, class name),
the token rows of each class, its shots and its own seed (:meth:`SampledTask.to_dict`). The sampler
reads only the datasets it is given: for a fold, its training datasets
(:func:`sample_fold_tasks` refuses a fold whose test or validation datasets would be drawn).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ml_core.images import DatasetTokens

TaskKind = Literal["subset", "mixture"]


@dataclass(frozen=True)
class TaskSamplerConfig:
    """How tasks are drawn. ``mixture_share``: the chance a task mixes classes of 2..``max_sources``
    datasets (0: class subsets of one dataset only); ``max_classes`` caps a task's classes; a task
    has between ``min_shots`` (more if it would have fewer than ``min_images`` images: a 4-fold probe needs 8)
    and every available shot per class (the fewest valid rows among its classes); a class needs
    ``min_class_rows`` valid rows to be drawn."""

    n_tasks: int = 100
    mixture_share: float = 0.5
    max_sources: int = 4
    max_classes: int = 10
    min_shots: int = 4
    min_images: int = 8
    min_class_rows: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_tasks < 0 or not 0.0 <= self.mixture_share <= 1.0 or self.max_sources < 2:
            raise ValueError(f"invalid TaskSamplerConfig: {self}")
        if self.max_classes < 2 or self.min_shots < 1 or self.min_class_rows < 1:
            raise ValueError(f"invalid TaskSamplerConfig: {self}")


@dataclass(frozen=True)
class TaskClass:
    """One class of a task: ``dataset``'s token column ``column`` (class ``name``), its token ``rows``."""

    dataset: str
    column: int
    name: str
    rows: tuple[int, ...]


@dataclass(frozen=True)
class SampledTask:
    """A recorded task: its classes in label order (label k = ``classes[k]``)."""

    name: str
    kind: TaskKind
    sources: tuple[str, ...]
    classes: tuple[TaskClass, ...]
    shots: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampledTask:
        classes = tuple(TaskClass(c["dataset"], int(c["column"]), c["name"], tuple(c["rows"])) for c in data["classes"])
        return cls(data["name"], data["kind"], tuple(data["sources"]), classes, int(data["shots"]), int(data["seed"]))

    @property
    def n_images(self) -> int:
        return sum(len(c.rows) for c in self.classes)


def _usable_columns(tokens: DatasetTokens, min_rows: int) -> list[int]:
    return [int(c) for c in np.flatnonzero(tokens.valid.sum(axis=0) >= min_rows)]


def _draw_task(index: int, seed: int, names: Sequence[str], alone: Sequence[str], columns: Mapping[str, list[int]],
               tokens: Mapping[str, DatasetTokens], config: TaskSamplerConfig) -> SampledTask:
    """Task ``index``, drawn from its own ``seed`` only: a mixture of ``names`` (each with a usable class) or
    a subset of one of ``alone`` (those with two usable classes)."""
    rng = np.random.default_rng(seed)
    mixture = len(names) >= 2 and (not alone or rng.random() < config.mixture_share)
    if mixture:
        n_sources = int(rng.integers(2, min(config.max_sources, len(names), config.max_classes) + 1))
        sources = sorted(rng.choice(names, size=n_sources, replace=False).tolist())
        # at least one class of each source, then more classes up to a drawn total
        most = min(config.max_classes, sum(len(columns[d]) for d in sources))
        total = int(rng.integers(max(2, n_sources), max(2, n_sources, most) + 1))
        picks = [(d, int(rng.choice(columns[d]))) for d in sources]
        rest = [(d, c) for d in sources for c in columns[d] if (d, c) not in picks]
        extra = rng.permutation(len(rest))[: max(0, total - len(picks))]
        picks += [rest[i] for i in extra]
    else:
        dataset = alone[int(rng.integers(len(alone)))]
        sources = [dataset]
        own = columns[dataset]
        k = int(rng.integers(2, min(config.max_classes, len(own)) + 1))
        picks = [(dataset, int(c)) for c in rng.choice(own, size=k, replace=False)]
    picks = [picks[i] for i in rng.permutation(len(picks))]  # relabelled: label order is the draw's
    available = min(int(tokens[d].valid[:, c].sum()) for d, c in picks)
    fewest = min(max(config.min_shots, -(-config.min_images // len(picks))), available)
    shots = int(rng.integers(fewest, available + 1))
    classes = []
    for d, c in picks:
        valid_rows = np.flatnonzero(tokens[d].valid[:, c])
        rows = np.sort(rng.choice(valid_rows, size=shots, replace=False))
        classes.append(TaskClass(d, c, tokens[d].class_names[c], tuple(int(r) for r in rows)))
    return SampledTask(f"task{index:05d}", "mixture" if mixture else "subset", tuple(sources), tuple(classes),
                       shots, seed)


def sample_tasks(datasets: Sequence[str], tokens: Mapping[str, DatasetTokens],
                 config: TaskSamplerConfig) -> list[SampledTask]:
    """``config.n_tasks`` tasks drawn from ``datasets`` only (their ``tokens``); seeded by ``config.seed``.

    Each task gets its own seed from the sampler's, so task ``i`` is the same whatever ``n_tasks``
    (a smaller draw is a prefix of a larger one). Datasets with fewer than two usable classes are
    never drawn alone (they may join a mixture)."""
    names = sorted(set(datasets))
    columns = {d: _usable_columns(tokens[d], config.min_class_rows) for d in names}
    names = [d for d in names if columns[d]]
    alone = [d for d in names if len(columns[d]) >= 2]
    if not alone and len(names) < 2:
        raise ValueError(f"no task can be drawn from {sorted(set(datasets))}: too few usable classes")
    seeds = np.random.default_rng([config.seed, 0x7A5C]).integers(0, 2**63 - 1, size=config.n_tasks)
    return [_draw_task(i, int(seed), names, alone, columns, tokens, config) for i, seed in enumerate(seeds)]


def sample_fold_tasks(fold: Any, tokens: Mapping[str, DatasetTokens], config: TaskSamplerConfig) -> list[SampledTask]:
    """Tasks from a fold's TRAINING datasets only (an :class:`~ml_core.evaluation.folds.Fold`, or anything
    with ``train``, ``val`` and ``test``); a fold whose training datasets overlap its validation or test
    ones is refused: their images must never reach a training list."""
    leaked = set(fold.train) & (set(fold.val) | set(fold.test))
    if leaked:
        raise ValueError(f"fold {getattr(fold, 'name', '?')}: datasets {sorted(leaked)} are both training and held out")
    return sample_tasks(fold.train, tokens, config)


def tasks_within(tasks: Sequence[SampledTask], datasets: Sequence[str]) -> list[SampledTask]:
    """The tasks whose every source is one of ``datasets`` (a pool drawn once, cut to a fold's training set)."""
    allowed = set(datasets)
    return [t for t in tasks if set(t.sources) <= allowed]


def task_tokens(task: SampledTask, tokens: Mapping[str, DatasetTokens]) -> DatasetTokens:
    """The task's dataset tokens ``(shots, K, D)``: row r, column k is token row ``classes[k].rows[r]`` of
    its dataset's column; every slot is a valid image (a class with fewer rows would be left invalid)."""
    dim = next(iter(tokens[c.dataset] for c in task.classes)).features.shape[-1]
    features = np.zeros((task.shots, len(task.classes), dim), dtype=np.float32)
    valid = np.zeros((task.shots, len(task.classes)), dtype=bool)
    for k, c in enumerate(task.classes):
        source = tokens[c.dataset]
        rows = list(c.rows)
        features[: len(rows), k] = source.features[rows, c.column]
        valid[: len(rows), k] = source.valid[rows, c.column]
    return DatasetTokens(features=features, valid=valid, class_names=[f"{c.dataset}/{c.name}" for c in task.classes],
                         attrs={"sampled_task": task.name, "sources": list(task.sources)})


def task_slots(task: SampledTask) -> tuple[list[tuple[str, int, int]], np.ndarray]:
    """The task's images as token slots ``(dataset, row, column)`` and their labels ``(n,)`` int64."""
    slots, labels = [], []
    for k, c in enumerate(task.classes):
        slots += [(c.dataset, r, c.column) for r in c.rows]
        labels += [k] * len(c.rows)
    return slots, np.asarray(labels, dtype=np.int64)
