"""The ranking corpus and its DataLoader (:func:`build_ranking_loader`; the seed's name for it,
``build_combined_similarity_loader``, is kept as an alias): batches for the ranker.

Each batch is a dict (B datasets, every model of the corpus):

* ``dataset_tokens`` ``(B, M, Dd)`` float32 and ``dataset_mask`` ``(B, M)`` bool: the dataset's
  image-feature tokens, padded to the longest in the batch (padding masked, never data);
* ``model_tokens`` ``(B, N, Dm)`` float32 (standardised) and ``model_mask`` ``(B, N)`` bool: True
  where the model has a ground-truth result on that dataset (or, unlabelled, every model);
* ``true_ranks`` ``(B, N)`` int64 (0 = best, -1 = unknown), ``true_scores`` ``(B, N)`` float32
  (accuracy z-scored within the dataset, higher = better), ``true_accuracy`` ``(B, N)`` (NaN = unknown);
* ``model_names`` (list of N), ``dataset_names`` (list of B), ``model_indices`` ``(B, N)`` int64,
  ``dataset_splits`` (list of B), ``batch_size`` (int);
* ``model_features`` ``(B, N, F)`` float32 when the corpus carries per-(dataset, model) features
  (see :mod:`ml_core.ranking.features`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ml_core.images import DatasetTokens
from ml_core.ranking.features import HISTORY_FEATURES

TokenMode = Literal["rows", "class_means"]


@dataclass
class ModelTokenNormalizer:
    """Per-feature standardisation of model tokens, fitted on training models only."""

    mean: np.ndarray  # (Dm,)
    std: np.ndarray  # (Dm,)

    @classmethod
    def fit(cls, tokens: np.ndarray) -> ModelTokenNormalizer:
        std = tokens.std(0)
        return cls(mean=tokens.mean(0), std=np.where(std > 1e-8, std, 1.0))

    def apply(self, tokens: np.ndarray) -> np.ndarray:
        return ((tokens - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> ModelTokenNormalizer:
        return cls(mean=np.asarray(data["mean"], dtype=np.float32), std=np.asarray(data["std"], dtype=np.float32))


@dataclass
class RankingCorpus:
    """Everything the ranker learns from: aligned models, datasets and their accuracies."""

    model_names: list[str]  # N
    model_tokens: np.ndarray  # (N, Dm) raw (un-normalised) model tokens
    dataset_names: list[str]  # D
    dataset_tokens: dict[str, DatasetTokens]
    accuracy: np.ndarray  # (D, N), NaN where unknown
    splits: dict[str, str] = field(default_factory=dict)  # dataset -> train / val / test
    model_features: dict[str, np.ndarray] | None = None  # dataset -> (N, F) per-model features
    model_sources: np.ndarray | None = None  # (N, Dd) source-sample descriptors, NaN rows: none
    task_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # sampled task -> its source datasets

    def __post_init__(self) -> None:
        if self.model_tokens.shape[0] != len(self.model_names):
            raise ValueError(f"{self.model_tokens.shape[0]} model tokens for {len(self.model_names)} models")
        if self.accuracy.shape != (len(self.dataset_names), len(self.model_names)):
            raise ValueError(f"accuracy shape {self.accuracy.shape} != (datasets, models)")
        missing = [d for d in self.dataset_names if d not in self.dataset_tokens]
        if missing:
            raise ValueError(f"no dataset tokens for {missing}")
        if self.model_sources is not None and self.model_sources.shape[0] != len(self.model_names):
            raise ValueError(f"{self.model_sources.shape[0]} source descriptors for {len(self.model_names)} models")

    def datasets_in(self, splits: Sequence[str]) -> list[str]:
        return [d for d in self.dataset_names if self.splits.get(d, "train") in splits]

    def accuracy_of(self, datasets: Sequence[str]) -> np.ndarray:
        rows = [self.dataset_names.index(d) for d in datasets]
        return self.accuracy[rows]


def dataset_token_set(
    tokens: DatasetTokens, mode: TokenMode, max_rows: int | None, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """A dataset's token sequence ``(M, Dd)`` and its mask ``(M,)`` for the chosen mode."""
    if mode == "class_means":
        means = tokens.class_means()
        return means.astype(np.float32), np.ones(len(means), dtype=bool)
    seq, mask = tokens.as_token_set(max_rows=max_rows, rng=rng)
    return seq.astype(np.float32), mask.astype(bool)


def scores_from_accuracy(accuracy: np.ndarray) -> np.ndarray:
    """Accuracy z-scored within each dataset (row); NaN stays NaN; constant rows -> 0."""
    mean = np.nanmean(accuracy, axis=1, keepdims=True)
    std = np.nanstd(accuracy, axis=1, keepdims=True)
    return np.where(std > 0, (accuracy - mean) / np.where(std > 0, std, 1.0), 0.0) * np.where(
        np.isnan(accuracy), np.nan, 1.0
    )


def ranks_from_accuracy(accuracy: np.ndarray) -> np.ndarray:
    """Rank of each model within its dataset (0 = best, ties share the min rank, -1 = unknown)."""
    ranks = np.full(accuracy.shape, -1, dtype=np.int64)
    for i, row in enumerate(accuracy):
        known = ~np.isnan(row)
        values = row[known]
        ranks[i, known] = [(values > v).sum() for v in values]
    return ranks


class _RankingItems(Dataset):
    def __init__(
        self,
        corpus: RankingCorpus,
        datasets: list[str],
        model_tokens: np.ndarray,
        mode: TokenMode,
        max_rows: int | None,
        sample_rows: bool,
        seed: int,
        labelled: bool,
        model_dropout: float = 0.0,
        history_dropout: float = 0.0,
    ):
        self.corpus, self.datasets, self.mode, self.max_rows = corpus, datasets, mode, max_rows
        self.model_tokens = torch.from_numpy(model_tokens)
        self.rng = np.random.default_rng(seed) if sample_rows else None
        self.model_rng = np.random.default_rng([seed, 1]) if model_dropout > 0 else None
        self.model_dropout = model_dropout
        self.history_rng = np.random.default_rng([seed, 2]) if history_dropout > 0 else None
        self.history_dropout = history_dropout
        self.labelled = labelled
        acc = corpus.accuracy_of(datasets) if labelled else np.full((len(datasets), len(corpus.model_names)), np.nan)
        self.accuracy = acc
        self.scores = scores_from_accuracy(acc)
        self.ranks = ranks_from_accuracy(acc)

    def __len__(self) -> int:
        return len(self.datasets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name = self.datasets[i]
        seq, mask = dataset_token_set(self.corpus.dataset_tokens[name], self.mode, self.max_rows, self.rng)
        known = ~np.isnan(self.accuracy[i]) if self.labelled else np.ones(len(self.corpus.model_names), dtype=bool)
        if self.model_rng is not None:  # augmentation: rank a random subset of the models
            keep = self.model_rng.random(len(known)) >= self.model_dropout
            if (known & keep).sum() >= 2:
                known = known & keep
        features = self.corpus.model_features[name] if self.corpus.model_features is not None else None
        if features is not None and self.history_rng is not None and self.history_rng.random() < self.history_dropout:
            features = features.copy()  # augmentation: this list's models look new (no history of their own)
            features[:, list(HISTORY_FEATURES)] = 0.0
        item_features = {} if features is None else {"model_features": torch.from_numpy(features.astype(np.float32))}
        return {
            **item_features,
            "dataset_tokens": torch.from_numpy(seq),
            "dataset_mask": torch.from_numpy(mask),
            "model_mask": torch.from_numpy(known),
            "true_ranks": torch.from_numpy(self.ranks[i]),
            "true_scores": torch.from_numpy(np.nan_to_num(self.scores[i], nan=0.0).astype(np.float32)),
            "true_accuracy": torch.from_numpy(self.accuracy[i].astype(np.float32)),
            "dataset_name": name,
            "dataset_split": self.corpus.splits.get(name, "train"),
        }

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        b = len(items)
        m = max(int(it["dataset_tokens"].shape[0]) for it in items)
        dim = int(items[0]["dataset_tokens"].shape[1])
        tokens = torch.zeros(b, m, dim)
        mask = torch.zeros(b, m, dtype=torch.bool)
        for j, it in enumerate(items):
            k = it["dataset_tokens"].shape[0]
            tokens[j, :k] = it["dataset_tokens"]
            mask[j, :k] = it["dataset_mask"]
        n = self.model_tokens.shape[0]
        extra = {}
        if "model_features" in items[0]:
            extra["model_features"] = torch.stack([it["model_features"] for it in items])
        return {
            **extra,
            "dataset_tokens": tokens,
            "dataset_mask": mask,
            "model_tokens": self.model_tokens.unsqueeze(0).expand(b, -1, -1).clone(),
            "model_mask": torch.stack([it["model_mask"] for it in items]),
            "true_ranks": torch.stack([it["true_ranks"] for it in items]),
            "true_scores": torch.stack([it["true_scores"] for it in items]),
            "true_accuracy": torch.stack([it["true_accuracy"] for it in items]),
            "model_names": list(self.corpus.model_names),
            "dataset_names": [it["dataset_name"] for it in items],
            "model_indices": torch.arange(n).unsqueeze(0).expand(b, -1).clone(),
            "dataset_splits": [it["dataset_split"] for it in items],
            "batch_size": b,
        }


class EpochMix(Sampler[int]):
    """Each epoch: every real list (indices ``0..n_real-1``) once and ``per_epoch`` sampled-task lists
    (indices ``n_real..``), the tasks taken in turn from seeded permutations (each task once before any
    repeats), all shuffled together. Real lists keep their weight however many tasks there are."""

    def __init__(self, n_real: int, n_tasks: int, per_epoch: int, seed: int):
        self.n_real, self.n_tasks, self.per_epoch = n_real, n_tasks, per_epoch
        self.rng = np.random.default_rng([seed, 3])
        self.queue: list[int] = []

    def __iter__(self):  # noqa: ANN204 - an iterator of ints
        take = []
        while len(take) < self.per_epoch and self.n_tasks:
            if not self.queue:
                self.queue = (self.n_real + self.rng.permutation(self.n_tasks)).tolist()
            take.append(self.queue.pop())
        order = np.concatenate([np.arange(self.n_real), np.asarray(take, dtype=np.int64)])
        return iter(order[self.rng.permutation(len(order))].tolist())

    def __len__(self) -> int:
        return self.n_real + (self.per_epoch if self.n_tasks else 0)


def tasks_per_epoch(n_real: int, task_share: float) -> int:
    """How many sampled-task lists an epoch of ``n_real`` real lists shows so that they are ``task_share`` of it."""
    if not 0.0 <= task_share < 1.0:
        raise ValueError(f"task_share must be in [0, 1), got {task_share}")
    return int(round(n_real * task_share / (1.0 - task_share)))


def build_ranking_loader(
    corpus: RankingCorpus,
    *,
    splits: Sequence[str] = ("train",),
    model_normalizer: ModelTokenNormalizer,
    batch_size: int = 4,
    shuffle: bool = False,
    token_mode: TokenMode = "rows",
    max_rows: int | None = 8,
    sample_rows: bool = False,
    seed: int = 0,
    labelled: bool = True,
    datasets: Sequence[str] | None = None,
    model_dropout: float = 0.0,
    history_dropout: float = 0.0,
    tasks: Sequence[str] = (),
    task_share: float = 0.5,
) -> DataLoader:
    """One loader over the datasets of ``splits`` (or an explicit ``datasets`` list).

    ``sample_rows`` draws a fresh random subset of ``max_rows`` class-balanced rows every time
    a dataset is visited (training augmentation); otherwise the first ``max_rows`` rows are used.
    ``model_dropout`` hides that fraction of the models from each visited list (augmentation);
    ``history_dropout`` is the chance that a visited list is shown as if all its models were new: the
    features that read a model's own past results (:data:`HISTORY_FEATURES`) set to the neutral 0,
    so the ranker also learns to order models by what speaks for new ones (source, weights).
    ``tasks``: sampled tasks (``corpus.task_sources``) shown beside the real lists, ``task_share`` of each
    epoch (:class:`EpochMix`; the real lists are each shown once per epoch, in a seeded order).
    """
    names = list(datasets) if datasets is not None else corpus.datasets_in(splits)
    n_real = len(names)
    names += list(tasks)
    items = _RankingItems(
        corpus,
        names,
        model_normalizer.apply(corpus.model_tokens),
        token_mode,
        max_rows,
        sample_rows,
        seed,
        labelled,
        model_dropout,
        history_dropout,
    )
    generator = torch.Generator().manual_seed(seed)
    if tasks:
        mix = EpochMix(n_real, len(tasks), tasks_per_epoch(n_real, task_share), seed)
        return DataLoader(items, batch_size=batch_size, sampler=mix, collate_fn=items.collate)
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle, collate_fn=items.collate, generator=generator)


#: The seed project's name for :func:`build_ranking_loader`.
build_combined_similarity_loader = build_ranking_loader


def accuracy_matrix(ranks: pd.DataFrame, datasets: Sequence[str], models: Sequence[str]) -> np.ndarray:
    """``(len(datasets), len(models))`` accuracies from a ground-truth frame (``dataset_key``,
    ``model_key``, ``accuracy`` columns), NaN where a model has no result."""
    wide = ranks.pivot(index="dataset_key", columns="model_key", values="accuracy")
    return wide.reindex(index=list(datasets), columns=list(models)).to_numpy(dtype=np.float64)


def ranking_corpus(
    ranks: pd.DataFrame,
    model_tokens: Mapping[str, np.ndarray],
    dataset_tokens: Mapping[str, DatasetTokens],
    *,
    splits: Mapping[str, str] | None = None,
    model_sources: np.ndarray | None = None,
) -> RankingCorpus:
    """The corpus of every model with a token and every labelled dataset with tokens (both sorted by
    key), aligned with the ground truth ``ranks``. ``dataset_tokens`` may load lazily: only the
    labelled datasets are read. ``model_sources`` are aligned with the sorted model keys."""
    models = sorted(model_tokens)
    labelled = sorted(set(ranks["dataset_key"]) & set(dataset_tokens))
    if not labelled:
        raise ValueError("no dataset has both tokens and ground truth: nothing to train the ranker on")
    return RankingCorpus(
        model_names=models,
        model_tokens=np.stack([model_tokens[m] for m in models]),
        dataset_names=labelled,
        dataset_tokens={d: dataset_tokens[d] for d in labelled},
        accuracy=accuracy_matrix(ranks, labelled, models),
        splits=dict(splits or {}),
        model_sources=model_sources,
    )
