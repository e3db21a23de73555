"""Ground truth for ranking: a performance table turned into per-dataset ranks and scores."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_core.ground_truth.tables import NameReport, PerformanceTable, PerformanceTableError, check_names

logger = logging.getLogger(__name__)

GROUND_TRUTH_COLUMNS = ("dataset", "model", "accuracy", "rank", "score", "norm_accuracy", "n_models")


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Per-dataset ground truth, one row per (dataset, model) with a measured accuracy.

    ``frame`` columns:

    - ``dataset``, ``model`` (str); ``accuracy`` (float, fraction);
    - ``rank`` (int): 0 = best in the dataset, tied accuracies share the lowest rank;
    - ``score`` (float): accuracy z-scored within the dataset (population std, ``ddof=0``);
      0 for every model when the dataset's accuracies are all equal;
    - ``norm_accuracy`` (float): min-max within the dataset, 1 = best, 0 = worst; 1 for every
      model when the accuracies are all equal;
    - ``n_models`` (int): models ranked in that dataset.

    Rows are ordered by dataset (table order), then rank, then model name. ``excluded_datasets``
    lists datasets with fewer than 2 models, which cannot be ranked and are left out.
    """

    frame: pd.DataFrame
    excluded_datasets: tuple[str, ...] = ()

    @property
    def datasets(self) -> list[str]:
        return list(pd.unique(self.frame["dataset"]))

    def pivot(self, value: str = "score") -> pd.DataFrame:
        """``value`` as a (n_datasets, n_models) frame, NaN where a model has no accuracy."""
        models = sorted(pd.unique(self.frame["model"]))
        wide = self.frame.pivot(index="dataset", columns="model", values=value)
        return wide.reindex(index=self.datasets, columns=models)


def ground_truth_ranks(table: PerformanceTable) -> GroundTruth:
    """Ranks, z-scores and min-max accuracies of each model within each dataset of ``table``."""
    frame = table.frame[["dataset", "model", "accuracy"]].copy()
    n_models = frame.groupby("dataset", sort=False)["model"].transform("size")
    excluded = tuple(pd.unique(frame.loc[n_models < 2, "dataset"]))
    if excluded:
        logger.warning("datasets with fewer than 2 models cannot be ranked, excluded: %s", list(excluded))
    frame = frame.loc[n_models >= 2].copy()
    frame["n_models"] = n_models[n_models >= 2].astype(np.int64)

    accuracy = frame.groupby("dataset", sort=False)["accuracy"]
    frame["rank"] = (accuracy.rank(method="min", ascending=False) - 1).astype(np.int64)
    mean, std = accuracy.transform("mean"), accuracy.transform(lambda values: values.std(ddof=0))
    low, high = accuracy.transform("min"), accuracy.transform("max")
    constant = high == low
    frame["score"] = np.where(constant, 0.0, (frame["accuracy"] - mean) / std.where(~constant, 1.0))
    frame["norm_accuracy"] = np.where(constant, 1.0, (frame["accuracy"] - low) / (high - low).where(~constant, 1.0))

    order = {name: index for index, name in enumerate(table.datasets)}
    frame = frame.assign(_order=frame["dataset"].map(order))
    frame = frame.sort_values(["_order", "rank", "model"], kind="stable").drop(columns="_order")
    return GroundTruth(frame=frame[list(GROUND_TRUTH_COLUMNS)].reset_index(drop=True), excluded_datasets=excluded)


@dataclass(frozen=True, eq=False)
class KeyedGroundTruth:
    """Ground truth restricted to the zoo and the catalog, with their partition keys.

    ``frame`` has the :class:`GroundTruth` columns plus ``model_key`` and ``dataset_key``
    (names are the zoo's / catalog's spelling). ``names`` says what did not match.
    """

    frame: pd.DataFrame
    names: NameReport
    excluded_datasets: tuple[str, ...]


def keyed_ground_truth(
    table: PerformanceTable, model_keys: dict[str, str], dataset_keys: dict[str, str]
) -> KeyedGroundTruth:
    """Match ``table`` to known models and datasets (``name -> partition key``) and rank within them.

    Ranks and scores are computed among the zoo's models only. Raises PerformanceTableError when
    no (dataset, model) pair of the table is known.
    """
    names = check_names(table, model_keys, dataset_keys)
    if not names.model_map or not names.dataset_map:
        raise PerformanceTableError(
            f"{table.report.source}: no table entry matches the zoo and the datasets "
            f"(unknown models: {list(names.unknown_models)[:10]}, unknown datasets: {list(names.unknown_datasets)[:10]})"
        )
    restricted = table.restrict(models=list(names.model_map), datasets=list(names.dataset_map))
    truth = ground_truth_ranks(restricted)
    frame = truth.frame.copy()
    frame["model"] = frame["model"].map(names.model_map)
    frame["dataset"] = frame["dataset"].map(names.dataset_map)
    frame["model_key"] = frame["model"].map(model_keys)
    frame["dataset_key"] = frame["dataset"].map(dataset_keys)
    return KeyedGroundTruth(frame=frame, names=names, excluded_datasets=truth.excluded_datasets)
