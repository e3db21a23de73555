"""Per-(dataset, model) input features for the ranker: the cheap baselines' opinions.

For a dataset, feature 0 is the data-free prior (each model's mean normalised performance on
the reference datasets), feature 1 the nearest-dataset score (similarity-weighted performance on
the ``k`` most similar reference datasets), feature 2 the source similarity (how much the
dataset looks like the sample of each model's pre-training images,
:mod:`ml_core.ranking.baselines.source`) and feature 3 the *weight neighbours* score: the
nearest-dataset scores of the model's nearest reference models in weight-embedding space
(softmax of the centred cosine similarity of the model tokens over ``neighbour_temperature``,
over its ``neighbour_k`` most similar reference models (all of them in a zoo of up to
``neighbour_k + 1``; past that the weights beyond the top ``k`` are below exp(-Δ/T) of the top ones
and left out, so a dataset of 10,000 models costs a gather, not an N x N product); the model itself
left out, so a model with results looks like one without). Feature 3 is what
lets a model never evaluated be placed by its weights alone. Each is z-scored across models so
only the order within the dataset matters. Models without a value (no past result, no source sample) get 0, the neutral
value. The reference datasets are the training datasets; when the dataset is itself a training
dataset, its whole family is left out of its own reference, so that a training example looks like
a held-out one (no dataset sees its own answer). Source similarity needs no reference: it is
a property of the model and the dataset alone, so it also informs on models never evaluated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ml_core.ranking.baselines import data_free_prior, nearest_dataset_scores, source_similarity

FEATURE_NAMES = ("prior", "nearest", "source_similarity", "weight_neighbours")
N_BASELINE_FEATURES = len(FEATURE_NAMES)
#: the columns that read a model's own past results: neutral (0) for a model never evaluated
HISTORY_FEATURES = (FEATURE_NAMES.index("prior"), FEATURE_NAMES.index("nearest"))


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
    model_tokens: np.ndarray | None = None  # (N, Dm) the reference models' tokens, for weight neighbours
    neighbour_temperature: float = 0.05
    neighbour_k: int = 64  # neighbours kept per model (every reference model while N <= k + 1)
    _neighbours: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def features(
        self,
        descriptor: np.ndarray,
        model_names: Sequence[str],
        exclude_family: str | Collection[str] | None = None,
        model_sources: np.ndarray | None = None,
        model_tokens: np.ndarray | None = None,
    ) -> np.ndarray:
        """Features ``(len(model_names), 4)`` for a dataset with this ``descriptor``.

        ``model_sources (len(model_names), D)``: each model's source descriptor, NaN rows where it
        has none (``None``: nobody has one). ``model_tokens (len(model_names), Dm)``: the models'
        weight-embedding tokens (``None``, or a reference without tokens: the weight-neighbours
        feature is neutral). ``exclude_family``: a family (or several: a sampled task mixing datasets of
        several families) whose reference datasets are left out. Models unknown to the reference get the neutral value (0 after
        z-scoring of the others) for the prior and nearest features; with no reference dataset left
        (a single training family), every history-based feature is neutral.
        """
        out = np.zeros((len(model_names), N_BASELINE_FEATURES))
        if model_sources is not None:
            out[:, 2] = zscore_known(source_similarity(descriptor, model_sources))
        excluded = {exclude_family} if isinstance(exclude_family, str) or exclude_family is None else set(exclude_family)
        rows = [i for i, d in enumerate(self.dataset_names) if self.families.get(d, d) not in excluded]
        if not rows:
            return out.astype(np.float32)
        acc = self.accuracy[rows]
        prior = data_free_prior(acc)
        knn, _ = nearest_dataset_scores(descriptor, self.descriptors[rows], acc, k=self.k, temperature=self.temperature)
        index = {m: j for j, m in enumerate(self.model_names)}
        known = [i for i, m in enumerate(model_names) if m in index]
        if known:  # else every model is new: nothing to say but the source similarity and the weights
            cols = [index[model_names[i]] for i in known]
            out[known, 0] = zscore(prior[cols])
            out[known, 1] = zscore(knn[cols])
        if model_tokens is not None and self.model_tokens is not None and len(self.model_names) > 1:
            evaluated = ~np.all(np.isnan(acc), axis=0)  # a reference model with no result is nobody's neighbour
            if evaluated.sum() > 1:
                out[:, 3] = zscore(self.neighbour_scores(model_names, model_tokens, zscore(knn), evaluated))
        return out.astype(np.float32)

    def neighbour_scores(
        self, model_names: Sequence[str], model_tokens: np.ndarray, reference_scores: np.ndarray, usable: np.ndarray
    ) -> np.ndarray:
        """``(len(model_names),)``: each model's softmax-weighted mean of ``reference_scores (N,)`` over the
        ``usable (N,)`` reference models among its :attr:`neighbour_k` nearest (never itself), weighted by
        centred-cosine similarity of the tokens."""
        index, weights = self.neighbours(model_names, model_tokens, usable)
        return (weights * np.where(usable, reference_scores, 0.0)[index]).sum(1)

    def neighbours(
        self, model_names: Sequence[str], model_tokens: np.ndarray, usable: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(index (M, k), weights (M, k))``: each model's :attr:`neighbour_k` most similar ``usable``
        reference models (never itself) and their softmax weights. It depends on the tokens only, not
        on the dataset: computed once per model set (the latest one is kept), in blocks of rows so
        that memory stays about 32 MB whatever the zoo."""
        ref = np.asarray(self.model_tokens, dtype=np.float64)
        if np.shape(model_tokens)[1] != ref.shape[1]:
            raise ValueError(f"model tokens of width {np.shape(model_tokens)[1]}, but the ranker's reference models have "
                             f"{ref.shape[1]}: the embeddings changed since the ranker was trained; retrain it")
        given = np.ascontiguousarray(model_tokens)  # hashed as given: no copy of a 10,000-model matrix
        digest = hashlib.sha256(given.data)
        digest.update(f"{given.dtype}{given.shape}".encode() + "\n".join(model_names).encode() + usable.tobytes())
        key = digest.hexdigest()
        if key in self._neighbours:
            return self._neighbours[key]
        tokens = given.astype(np.float64, copy=False)
        centre = ref[usable].mean(0)

        def unit(x: np.ndarray) -> np.ndarray:
            x = x - centre
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

        reference, queries = unit(ref), unit(tokens)
        position = {m: j for j, m in enumerate(self.model_names)}
        own = np.array([position.get(m, -1) for m in model_names], dtype=np.int64)
        k = min(self.neighbour_k, len(self.model_names))
        index = np.empty((len(tokens), k), dtype=np.int64)
        weights = np.empty((len(tokens), k), dtype=np.float64)
        block = max(1, 2**22 // max(len(reference), 1))  # 4 M similarities (32 MB) at a time
        for start in range(0, len(tokens), block):
            sim = queries[start:start + block] @ reference.T / self.neighbour_temperature  # (block, N)
            sim[:, ~usable] = -np.inf
            mine = np.flatnonzero(own[start:start + block] >= 0)
            sim[mine, own[start:start + block][mine]] = -np.inf  # never one's own neighbour
            part = (np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < sim.shape[1]
                    else np.broadcast_to(np.arange(k), sim.shape))
            logits = np.take_along_axis(sim, part, axis=1)
            w = np.exp(logits - logits.max(1, keepdims=True))
            index[start:start + block] = part
            weights[start:start + block] = w / w.sum(1, keepdims=True)
        self._neighbours = {key: (index, weights)}  # the latest model set only: memory stays M x k
        return index, weights

    def to_dict(self) -> dict:
        return {
            "dataset_names": self.dataset_names,
            "model_names": self.model_names,
            "accuracy": [[None if np.isnan(v) else float(v) for v in row] for row in self.accuracy],
            "descriptors": self.descriptors.tolist(),
            "families": self.families,
            "k": self.k,
            "temperature": self.temperature,
            "model_tokens": None if self.model_tokens is None else np.asarray(self.model_tokens).tolist(),
            "neighbour_temperature": self.neighbour_temperature,
            "neighbour_k": self.neighbour_k,
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
            model_tokens=None if data.get("model_tokens") is None else np.asarray(data["model_tokens"], dtype=np.float64),
            neighbour_temperature=float(data.get("neighbour_temperature", 0.05)),
            neighbour_k=int(data.get("neighbour_k", 64)),
        )
