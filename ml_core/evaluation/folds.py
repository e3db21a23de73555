"""Evaluation folds that keep data out of training and model selection.

* leave-family-out: each fold holds out every dataset of one family as ``test``; ``val``
  families (for early stopping and model selection) are drawn from the remaining ones; nothing
  of a test dataset (images, table rows, normalisation statistics) reaches training.
* leave-models-out: each fold also holds out a group of *models*: they are never seen by the
  autoencoder nor by the ranker, and the fold ranks them on its held-out datasets.
* two derived protocols measure how much the history matters (``benchmarks/history_size.py``):
  a leave-family-out fold with only some of its training families kept
  (:func:`subsample_training_families`), and leave-dataset-out, where a held-out dataset's
  relatives (the other datasets of its family) are in training (:func:`leave_dataset_out_folds`).
  The second leaks what leave-family-out forbids on purpose: it is context, not the headline.

Seeded; the folds are recorded with the results.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Fold:
    name: str
    kind: Literal["family", "models", "dataset"]
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    held_out_models: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _families(datasets: Sequence[str], families: Mapping[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in sorted(datasets):
        groups.setdefault(families.get(name, name), []).append(name)
    return groups


def leave_family_out_folds(
    datasets: Sequence[str], families: Mapping[str, str], *, val_families: int = 2, seed: int = 0
) -> list[Fold]:
    """One fold per family: that family is ``test``, ``val_families`` others are ``val``."""
    groups = _families(datasets, families)
    keys = sorted(groups)
    if len(keys) < 3:
        raise ValueError(f"leave-family-out needs at least 3 families, got {len(keys)}")
    folds = []
    for i, held in enumerate(keys):
        rest = [k for k in keys if k != held]
        rng = np.random.default_rng([seed, i])
        n_val = min(val_families, len(rest) - 1)
        val_keys = set(rng.choice(rest, size=n_val, replace=False).tolist()) if n_val > 0 else set()
        folds.append(
            Fold(
                name=f"family:{held}",
                kind="family",
                train=tuple(d for k in rest if k not in val_keys for d in groups[k]),
                val=tuple(d for k in sorted(val_keys) for d in groups[k]),
                test=tuple(groups[held]),
            )
        )
    return folds


def leave_models_out_folds(
    models: Sequence[str],
    datasets: Sequence[str],
    families: Mapping[str, str],
    *,
    n_folds: int = 4,
    test_fraction: float = 0.3,
    val_families: int = 2,
    seed: int = 0,
) -> list[Fold]:
    """``n_folds`` disjoint groups of held-out models; each fold also holds out families of datasets."""
    models = sorted(models)
    rng = np.random.default_rng(seed)
    order = [models[i] for i in rng.permutation(len(models))]
    groups = _families(datasets, families)
    keys = sorted(groups)
    n_test = max(1, round(test_fraction * len(keys)))
    folds = []
    for i in range(n_folds):
        held_models = tuple(sorted(order[i::n_folds]))
        fold_rng = np.random.default_rng([seed, 1000 + i])
        shuffled = [keys[j] for j in fold_rng.permutation(len(keys))]
        test_keys = set(shuffled[:n_test])
        val_keys = set(shuffled[n_test : n_test + val_families])
        folds.append(
            Fold(
                name=f"models:{i}",
                kind="models",
                train=tuple(d for k in keys if k not in test_keys | val_keys for d in groups[k]),
                val=tuple(d for k in sorted(val_keys) for d in groups[k]),
                test=tuple(d for k in sorted(test_keys) for d in groups[k]),
                held_out_models=held_models,
            )
        )
    return folds


def subsample_training_families(
    fold: Fold, families: Mapping[str, str], n_families: int, *, seed: int = 0
) -> Fold:
    """``fold`` with only ``n_families`` of its training families (seeded choice); val and test unchanged.

    A smaller history, same held-out data: how a method's quality grows with the number of
    families of past results. ``n_families`` at or above the fold's count returns the fold itself.
    """
    groups = _families(fold.train, families)
    keys = sorted(groups)
    if n_families < 1:
        raise ValueError(f"n_families must be at least 1, got {n_families}")
    if n_families >= len(keys):
        return fold
    kept = sorted(np.random.default_rng([seed, n_families, zlib.crc32(fold.name.encode())]).choice(
        keys, size=n_families, replace=False).tolist())
    return replace(fold, name=f"{fold.name}|history:{n_families}:{seed}",
                   train=tuple(d for k in kept for d in groups[k]))


def leave_dataset_out_folds(family_folds: Sequence[Fold]) -> list[Fold]:
    """For each leave-family-out fold holding out several datasets: one fold per held-out dataset,
    with the other datasets of its family moved into training (its relatives are then history).

    Validation datasets stay those of the family fold, so each fold differs from its family fold
    only by the relatives in training: the pair measures what a relative in the history is worth.
    """
    folds = []
    for fold in family_folds:
        if fold.kind != "family" or len(fold.test) < 2:
            continue
        for dataset in fold.test:
            relatives = tuple(d for d in fold.test if d != dataset)
            folds.append(replace(fold, name=f"dataset:{dataset}", kind="dataset",
                                 train=fold.train + relatives, test=(dataset,)))
    return folds
