"""Per-(dataset, model) input features for the ranker: the cheap baselines' opinions.

For a dataset, feature 0 is the data-free prior (each model's mean normalised performance on
the reference datasets), feature 1 the nearest-dataset score (similarity-weighted performance on
the ``k`` most similar reference datasets) and feature 2 the source similarity (how much the
dataset looks like the sample of each model's pre-training images,
:mod:`ml_core.ranking.baselines.source`), each z-scored across models so only the order within the
dataset matters. Models without a value (no past result, no source sample) get 0, the neutral
value. The reference datasets are the training datasets; when the dataset is itself a training
dataset, its whole family is left out of its own reference, so that a training example looks like
a held-out one (no dataset sees its own answer). Source similarity needs no reference: it is
a property of the model and the dataset alone, so it also informs on models never evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ml_core.ranking.baselines import data_free_prior, nearest_dataset_scores, source_similarity

N_BASELINE_FEATURES = 3
FEATURE_NAMES = ("prior", "nearest", "source_similarity")


def zscore(values: np.ndarray) -> np.ndarray:
    """Centred and scaled to unit std across the array; a constant array gives zeros."""
    std = values.std()
    return (values - values.mean()) / std if std > 1e-12 else np.zeros_like(values)


def zscore_known(values: np.ndarray) -> np.ndarray:
    """:func:`zscore` over the non-NaN entries; NaN entries (unknown) become 0, the neutral value."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    known = ~np.isnan(values)
    if known.any():
        out[known] = zscore(values[known])
    return out


@dataclass
class BaselineReference:
    """What the features are computed from: reference datasets' accuracies and descriptors."""

    dataset_names: list[str]  # T
    model_names: list[str]  # N
    accuracy: np.ndarray  # (T, N), NaN where unknown
    descriptors: np.ndarray  # (T, Dd) unit-length dataset descriptors
    families: dict[str, str]
    k: int = 3
    temperature: float = 0.05

    def features(
        self,
        descriptor: np.ndarray,
        model_names: Sequence[str],
        exclude_family: str | None = None,
        model_sources: np.ndarray | None = None,
    ) -> np.ndarray:
        """Features ``(len(model_names), 3)`` for a dataset with this ``descriptor``.

        ``model_sources (len(model_names), D)``: each model's source descriptor, NaN rows where it
        has none (``None``: nobody has one). Models unknown to the reference get the neutral value
        (0 after z-scoring of the others); with no reference dataset left (a single training
        family), the prior and nearest features are neutral.
        """
        out = np.zeros((len(model_names), N_BASELINE_FEATURES))
        if model_sources is not None:
            out[:, 2] = zscore_known(source_similarity(descriptor, model_sources))
        rows = [i for i, d in enumerate(self.dataset_names) if self.families.get(d, d) != exclude_family]
        if not rows:
            return out.astype(np.float32)
        acc = self.accuracy[rows]
        prior = data_free_prior(acc)
        knn, _ = nearest_dataset_scores(descriptor, self.descriptors[rows], acc, k=self.k, temperature=self.temperature)
        index = {m: j for j, m in enumerate(self.model_names)}
        known = [i for i, m in enumerate(model_names) if m in index]
        if known:  # else every model is new: nothing to say but the source similarity
            cols = [index[model_names[i]] for i in known]
            out[known, 0] = zscore(prior[cols])
            out[known, 1] = zscore(knn[cols])
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "dataset_names": self.dataset_names,
            "model_names": self.model_names,
            "accuracy": [[None if np.isnan(v) else float(v) for v in row] for row in self.accuracy],
            "descriptors": self.descriptors.tolist(),
            "families": self.families,
            "k": self.k,
            "temperature": self.temperature,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> BaselineReference:
        accuracy = np.array([[np.nan if v is None else v for v in row] for row in data["accuracy"]], dtype=np.float64)
        return cls(
            dataset_names=list(data["dataset_names"]),
            model_names=list(data["model_names"]),
            accuracy=accuracy.reshape(len(data["dataset_names"]), len(data["model_names"])),
            descriptors=np.asarray(data["descriptors"], dtype=np.float64),
            families=dict(data["families"]),
            k=int(data["k"]),
            temperature=float(data["temperature"]),
        )
