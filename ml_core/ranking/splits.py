"""Seeded splits of *datasets* (never of images): train / validation / test.

A test dataset contributes nothing to training or model selection: no image, no table row,
no normalisation statistic. Datasets of one ``family`` (same generator or image pool) always
land in the same split, so a close sibling cannot leak a held-out dataset's answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SPLITS = ("train", "val", "test")


def assign_dataset_splits(
    names: Sequence[str],
    *,
    families: Mapping[str, str] | None = None,
    val_fraction: float = 0.25,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> dict[str, str]:
    """Map each dataset name to ``train`` / ``val`` / ``test`` by whole families.

    At least one family always stays in train; val and test get at least one family each when
    there are three or more families and their fraction is positive.
    """
    families = dict(families or {})
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(families.get(name, name), []).append(name)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    order = [keys[i] for i in rng.permutation(len(keys))]
    n = len(order)

    def count(fraction: float) -> int:
        return 0 if fraction <= 0 or n < 3 else max(1, round(fraction * n))

    n_test = count(test_fraction)
    n_val = count(val_fraction)
    while n_test + n_val > n - 1 and (n_test or n_val):
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    assignment: dict[str, str] = {}
    for i, key in enumerate(order):
        split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
        for name in groups[key]:
            assignment[name] = split
    return assignment
