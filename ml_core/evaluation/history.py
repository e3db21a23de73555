"""How ranking quality depends on the history of past results (``benchmarks/history_size.py``).

Two studies over the leave-family-out folds (:mod:`ml_core.evaluation.folds`):

* **history size**: each fold trained on seeded subsets of 1, 2, 4, ... of its training families
  (validation and test data unchanged). A method's gain over the data-free prior *of the same
  history* is read per size; :func:`doubling_slope` fits it against log2 of the number of
  training datasets.
* **relatives**: each dataset of a family with several members held out alone, with its
  relatives in training, paired with the same dataset held out with its family.

Nothing here selects anything on test data: every method is fixed in advance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_core.evaluation.evaluation import EvaluationConfig, EvaluationData, evaluate_fold
from ml_core.evaluation.folds import Fold, leave_dataset_out_folds, subsample_training_families
from ml_core.progress import progress
from ml_core.ranking import RankerTrainingConfig

ALL = "all"  # the size label of a fold's full history


@dataclass(frozen=True)
class HistoryJob:
    """One fold to evaluate: ``size`` training families kept (``ALL``: every one), or a
    leave-dataset-out fold (``size == "relatives"``)."""

    size: str
    repeat: int
    fold: Fold

    @property
    def family_fold(self) -> str:
        return self.fold.name.split("|")[0]


def history_jobs(
    family_folds: Sequence[Fold], families: Mapping[str, str], sizes: Sequence[int], *, repeats: int, seed: int = 0
) -> list[HistoryJob]:
    """Per family fold: ``repeats`` seeded subsets for every size below its number of training
    families, the fold itself (``ALL``), then the leave-dataset-out folds (``"relatives"``)."""
    jobs = []
    for fold in family_folds:
        n_families = len({families.get(d, d) for d in fold.train})
        for size in sorted(set(sizes)):
            if size < n_families:
                jobs += [HistoryJob(str(size), r, subsample_training_families(fold, families, size, seed=seed + r))
                         for r in range(repeats)]
        jobs.append(HistoryJob(ALL, 0, fold))
    jobs += [HistoryJob("relatives", 0, fold) for fold in leave_dataset_out_folds(family_folds)]
    return jobs


def run_history_study(
    data: EvaluationData,
    jobs: Sequence[HistoryJob],
    config: EvaluationConfig,
    variants: Mapping[str, RankerTrainingConfig] | None = None,
) -> pd.DataFrame:
    """Every method's rows (:func:`ml_core.evaluation.evaluation.evaluate_fold`) for every job, tagged
    with ``size``, ``repeat``, ``family_fold`` and ``n_train`` (training datasets)."""
    variants = config.ranker_variants() if variants is None else variants
    rows = []
    for job in progress(jobs, desc="history folds"):
        for row in evaluate_fold(data, job.fold, config, variants=variants):
            rows.append({**row, "size": job.size, "repeat": job.repeat, "family_fold": job.family_fold,
                         "n_train": len(job.fold.train)})
    return pd.DataFrame(rows)


def size_table(rows: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """One row per (family fold, size): mean test weighted tau (truth-ordered) of each method over
    the size's subsets and the fold's test datasets, and the mean number of training datasets."""
    test = rows[(rows["split"] == "test") & (rows["size"] != "relatives") & rows["method"].isin(methods)]
    per_subset = test.groupby(["family_fold", "size", "repeat", "method"])["weighted_tau_truth"].mean().unstack()
    n_train = test.groupby(["family_fold", "size", "repeat"])["n_train"].first()
    per_subset = per_subset.join(n_train)
    return per_subset.groupby(["family_fold", "size"]).mean().reset_index()


def doubling_slope(
    table: pd.DataFrame, method: str, baseline: str = "prior", *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Least-squares slope of ``method - baseline`` (weighted tau) per doubling of ``n_train``, over
    the rows of :func:`size_table`, with its 5%-95% bootstrap interval (folds resampled)."""
    gain = (table[method] - table[baseline]).to_numpy(float)
    x = np.log2(table["n_train"].to_numpy(float))
    folds = table["family_fold"].to_numpy()

    def slope(index: np.ndarray) -> float:
        if np.ptp(x[index]) == 0:
            return float("nan")
        return float(np.polyfit(x[index], gain[index], 1)[0])

    names = np.unique(folds)
    by_fold = {f: np.flatnonzero(folds == f) for f in names}
    rng = np.random.default_rng(seed)
    boots = np.array([slope(np.concatenate([by_fold[f] for f in rng.choice(names, len(names))]))
                      for _ in range(n_boot)])
    low, high = np.nanpercentile(boots, [5, 95])
    return slope(np.arange(len(table))), float(low), float(high)


def relatives_table(rows: pd.DataFrame, methods: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test weighted tau per dataset (rows) and method (columns) for the datasets that have
    relatives: held out with their family (full history), and held out alone with the relatives
    in training. The two frames are aligned on the same datasets."""
    test = rows[(rows["split"] == "test") & rows["method"].isin(methods)]
    alone = test[test["size"] == "relatives"].groupby(["dataset", "method"])["weighted_tau_truth"].mean().unstack()
    family = test[(test["size"] == ALL) & test["dataset"].isin(alone.index)]
    with_family = family.groupby(["dataset", "method"])["weighted_tau_truth"].mean().unstack()
    return with_family.loc[alone.index], alone


def mean_and_standard_error(values: pd.Series | np.ndarray) -> tuple[float, float]:
    """Mean and standard error (ddof 1) of the finite values; NaN error with fewer than two."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se
