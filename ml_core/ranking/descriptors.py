"""Dataset descriptors: what a dataset's tokens say about the KIND of task it is.

The nearest-dataset baseline (and the ranker's ``nearest`` input) compares datasets by a descriptor.
Today's, :func:`ml_core.images.dataset_descriptor`, is the unit mean of the image-encoder features: it
says what the images look like, so a dataset sits next to its own family and says little about a new
family. The descriptors here are computed from the class-balanced tokens
(:class:`~ml_core.images.DatasetTokens`: ``features (R, C, D)``, ``valid (R, C)``; a slot with
``valid=False`` is never read) and describe the task instead: how separable its classes are in the
encoder's space, how many directions separate them, how spread each class is, how many classes and shots
it has, and a Task2Vec-style Fisher embedding. Each is a pure function ``tokens -> (d,) float64``,
registered by name in :data:`DESCRIPTORS`:

* ``mean`` -- today's descriptor, for reference (compared by cosine as it is);
* ``scatter`` -- moment statistics of the classes (:data:`SCATTER_NAMES`): Fisher ratio, the spectrum of
  the between-class scatter whitened by the within-class scatter, effective ranks, per-class spread,
  class-mean geometry, number of classes. Computed with 1/n moments, class-balanced: invariant to class
  order, row order, and to repeating every image any number of times;
* ``separability`` -- ``scatter`` plus how well the encoder's features alone classify the task
  (leave-one-out nearest-class-mean and 1-nearest-neighbour accuracy, chance-corrected) and the shots;
* ``task2vec`` -- :func:`task2vec`: the diagonal Fisher information of a small FIXED probe network's hidden
  layer (shared by every task) under a softmax head trained on the task's labels;
* ``separability+task2vec`` -- both, each block standardised and weighted equally.

Descriptors other than ``mean`` have heterogeneous units; :class:`DescriptorSpace` standardises each
dimension by its mean and spread over the REFERENCE datasets only (a fold's training datasets), then
compares by cosine. :class:`LearnedMetric` goes one step further: a diagonal metric fitted so that
reference datasets of DIFFERENT families whose zoo results agree (Spearman of their accuracy rows) lie
close: it learns which statistics carry a ranking across families. Both are fitted on the reference
datasets alone; a held-out dataset is only ever described, never fitted on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, nnls
from scipy.stats import rankdata, spearmanr

from ml_core.images import DatasetTokens, dataset_descriptor

#: shrinkage of the within-class scatter towards its mean eigenvalue (few shots, many dimensions)
SHRINKAGE = 0.1
#: generalized between/within eigen-mass kept in the descriptor: the share in the top 1, 2, 4, 8 directions
SPECTRUM_TOP = (1, 2, 4, 8)
SCATTER_NAMES = (
    "log_fisher_ratio",  # log tr(Sb) / tr(Sw): between-class over within-class variance
    "log_whitened_separation",  # log of the sum of the generalized eigenvalues of (Sw, Sb)
    *(f"spectrum_top{k}" for k in SPECTRUM_TOP),  # cumulative share of that sum in the top k directions
    "log_effective_rank_within",  # exp(entropy) of Sw's eigenvalues: how many directions classes spread in
    "effective_rank_between_share",  # exp(entropy) of Sb's eigenvalues / (C - 1): how many directions separate
    "log_participation_ratio",  # (sum l)^2 / sum l^2 of the total covariance: intrinsic dimension
    "log_total_variance",  # spread of the whole dataset (unit-norm images): coarse vs fine
    "class_spread_cv",  # coefficient of variation of the per-class spread: do classes differ in spread
    "class_mean_cosine",  # mean cosine between the (uncentred) class means: fine-grained classes look alike
    "log_min_margin",  # log of the closest two class means' distance over the within-class std
    "log_classes",
)
SEPARABILITY_NAMES = (*SCATTER_NAMES, "ncm_loo_kappa", "nn1_loo_kappa", "log_shots")
#: the probe network of :func:`task2vec`: hidden units, its seed, the head's L2 and optimiser steps
TASK2VEC_HIDDEN = 64
TASK2VEC_SEED = 0
TASK2VEC_L2 = 1e-2
TASK2VEC_STEPS = 200


def labelled_features(tokens: DatasetTokens) -> tuple[np.ndarray, np.ndarray]:
    """The valid slots as ``features (n, D)`` float64, each scaled to unit length, and ``labels (n,)``
    in ``0..C'-1`` (C' = classes with a valid image, in column order). Invalid slots are never read."""
    rows, cols = np.nonzero(np.asarray(tokens.valid, dtype=bool))
    if not len(rows):
        raise ValueError("dataset has no valid image features")
    x = np.asarray(tokens.features[rows, cols], dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), x)
    _, labels = np.unique(cols, return_inverse=True)
    return x, labels.astype(np.int64)


def _class_moments(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class means ``(C, D)``, counts ``(C,)`` and the scatters as factors (``S = F^T F``, never ``D x D``):
    the class-balanced within-class scatter ``Sw`` (mean of the classes' 1/n covariances), factor ``(n, D)``,
    and the between-class scatter ``Sb`` (covariance of the class means), factor ``(C, D)``."""
    n_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    means = np.zeros((n_classes, x.shape[1]))
    np.add.at(means, labels, x)
    means /= counts[:, None]
    weights = 1.0 / (counts[labels] * n_classes)  # each class counts once, whatever its images
    within = (x - means[labels]) * np.sqrt(weights)[:, None]
    between = (means - means.mean(0)) / np.sqrt(n_classes)
    return means, counts, within, between


def _eigenvalues(factor: np.ndarray) -> np.ndarray:
    """Eigenvalues of ``F^T F``, largest first, from the smaller of the two Gram matrices."""
    if not factor.size:
        return np.zeros(0)
    gram = factor @ factor.T if factor.shape[0] <= factor.shape[1] else factor.T @ factor
    return np.clip(np.linalg.eigvalsh(gram), 0.0, None)[::-1]


def _row_space(factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values (r,), basis (r, D))``: the non-zero eigenvalues of ``F^T F`` and their orthonormal eigenvectors,
    from the ``(n, n)`` Gram matrix (n images, far fewer than D dimensions)."""
    values, vectors = np.linalg.eigh(factor @ factor.T)
    keep = values > 1e-12 * max(float(values.max()), 1e-300)
    basis = (factor.T @ vectors[:, keep]) / np.sqrt(values[keep])
    return values[keep], basis.T


def _whitened_between(within: np.ndarray, between: np.ndarray, floor: float) -> np.ndarray:
    """Eigenvalues of ``Sb`` whitened by the shrunk ``(1 - SHRINKAGE) Sw + floor I`` (generalized eigenvalues),
    from the factors: ``Sw``'s eigenvectors span where it differs from ``floor I``."""
    values, basis = _row_space(within)
    scale = 1.0 / np.sqrt((1.0 - SHRINKAGE) * values + floor)
    projected = between @ basis.T  # (C, r)
    whitened = (projected * scale) @ basis + (between - projected @ basis) / np.sqrt(floor)
    return _eigenvalues(whitened)


def _effective_rank(values: np.ndarray) -> float:
    total = values.sum()
    if total <= 0:
        return 1.0
    p = values[values > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def _log(value: float) -> float:
    return float(np.log(max(value, 1e-6)))


def scatter_statistics(tokens: DatasetTokens) -> np.ndarray:
    """:data:`SCATTER_NAMES` ``(len(SCATTER_NAMES),)``: moment statistics of the classes in the encoder space.

    Every moment is a 1/n average and every class is weighted once, so the vector is the same under a
    change of class order, of row order, and when each image is repeated (the image count is scaled).
    A single-class dataset has no between-class scatter: its separation terms are at their floor."""
    x, labels = labelled_features(tokens)
    means, counts, within, between = _class_moments(x, labels)
    n_classes, dim = means.shape
    total = (x - x.mean(0)) / np.sqrt(len(x))
    within_values, between_values, total_values = _eigenvalues(within), _eigenvalues(between), _eigenvalues(total)
    tw, tb = float(within_values.sum()), float(between_values.sum())
    general = _whitened_between(within, between, SHRINKAGE * (tw / dim if tw > 0 else 1e-6))
    mass = general.sum()
    shares = [float(general[:k].sum() / mass) if mass > 0 else 1.0 for k in SPECTRUM_TOP]
    spread = np.array([np.sum((x[labels == c] - means[c]) ** 2) / counts[c] for c in range(n_classes)])
    unit_means = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    if n_classes > 1:
        cos = unit_means @ unit_means.T
        mean_cosine = float((cos.sum() - np.trace(cos)) / (n_classes * (n_classes - 1)))
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(n_classes, 1)]
        margin = float(gaps.min()) / np.sqrt(max(tw, 1e-12))
    else:
        mean_cosine, margin = 1.0, 0.0
    participation = total_values.sum() ** 2 / max(float((total_values**2).sum()), 1e-24)
    return np.array([
        _log(tb / tw if tw > 0 else 0.0),
        _log(mass),
        *shares,
        _log(_effective_rank(within_values)),
        _effective_rank(between_values) / max(n_classes - 1, 1) if tb > 0 else 0.0,
        _log(participation),
        _log(float(total_values.sum())),
        float(spread.std() / spread.mean()) if spread.mean() > 0 else 0.0,
        mean_cosine,
        _log(margin),
        np.log(n_classes),
    ], dtype=np.float64)


def _kappa(accuracy: float, n_classes: int) -> float:
    """Accuracy corrected for chance: 0 at 1/C, 1 when perfect."""
    chance = 1.0 / n_classes
    return (accuracy - chance) / (1.0 - chance) if n_classes > 1 else 0.0


def loo_accuracies(x: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Leave-one-out accuracy of the nearest class mean (each image left out of its own class's mean; an
    image alone in its class is scored against the other classes only, and counts as wrong) and of the
    nearest other image (cosine; features unit-length)."""
    n_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, labels, x)
    own = np.arange(len(x))
    dist = ((x[:, None, :] - (sums / counts[:, None])[None]) ** 2).sum(-1)  # (n, C)
    alone = counts[labels] <= 1
    left_out = (sums[labels] - x) / np.maximum(counts[labels] - 1, 1)[:, None]
    dist[own, labels] = np.where(alone, np.inf, ((x - left_out) ** 2).sum(-1))
    ncm = float(np.mean((dist.argmin(1) == labels) & ~alone))
    sims = x @ x.T
    sims[own, own] = -np.inf
    nn1 = float(np.mean(labels[sims.argmax(1)] == labels)) if len(x) > 1 else 0.0
    return ncm, nn1


def separability_statistics(tokens: DatasetTokens) -> np.ndarray:
    """:data:`SEPARABILITY_NAMES`: :func:`scatter_statistics`, then the chance-corrected leave-one-out accuracy
    of the nearest class mean and of the nearest image (how separable the classes are for the encoder's
    features), and log of the median number of valid images per class (the shots)."""
    x, labels = labelled_features(tokens)
    n_classes = int(labels.max()) + 1
    ncm, nn1 = loo_accuracies(x, labels)
    shots = float(np.median(np.bincount(labels, minlength=n_classes)))
    return np.concatenate([scatter_statistics(tokens), [_kappa(ncm, n_classes), _kappa(nn1, n_classes), np.log(shots)]])


def _probe_layer(dim: int, hidden: int = TASK2VEC_HIDDEN, seed: int = TASK2VEC_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The fixed hidden layer every task shares: ``weights (hidden, dim)`` with unit rows, ``bias (hidden,)``;
    depends on ``(dim, hidden, seed)`` only, never on a task."""
    rng = np.random.default_rng([seed, dim, hidden])
    weights = rng.normal(size=(hidden, dim))
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    return weights, rng.normal(scale=0.1, size=hidden)


def _fit_head(hidden: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression ``(C, H)`` + bias ``(C,)`` on the hidden activations, L2 :data:`TASK2VEC_L2`,
    L-BFGS from zero (deterministic), :data:`TASK2VEC_STEPS` iterations at most."""
    n, width = hidden.shape
    onehot = np.eye(n_classes)[labels]
    class_weight = 1.0 / (np.bincount(labels, minlength=n_classes)[labels] * n_classes)  # classes count once

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: n_classes * width].reshape(n_classes, width), theta[n_classes * width:]
        logits = hidden @ w.T + b
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        value = -float((class_weight * (onehot * log_p).sum(1)).sum()) + 0.5 * TASK2VEC_L2 * float((w**2).sum())
        residual = (np.exp(log_p) - onehot) * class_weight[:, None]  # (n, C)
        grad_w = residual.T @ hidden + TASK2VEC_L2 * w
        return value, np.concatenate([grad_w.ravel(), residual.sum(0)])

    theta = minimize(loss, np.zeros(n_classes * (width + 1)), jac=True, method="L-BFGS-B",
                     options={"maxiter": TASK2VEC_STEPS}).x
    return theta[: n_classes * width].reshape(n_classes, width), theta[n_classes * width:]


def task2vec(tokens: DatasetTokens) -> np.ndarray:
    """Task2Vec-style embedding ``(TASK2VEC_HIDDEN + 1,)``, after Achille et al. (ICCV 2019), from tokens only.

    NOT the Fisher of the image encoder (the tokens are all there is): the probe network is a FIXED
    hidden layer ``h = relu(P z + b)`` over the dataset's encoder features ``z`` (unit length, centred on
    the dataset's mean and scaled to unit mean norm, so that the embedding describes the task's structure,
    not where its images sit), with ``P`` a seeded random matrix shared by every task, as Task2Vec's probe
    network is shared; a softmax head ``W (C, H)`` is trained on the task's labels (classes weighted equally).
    The embedding is the diagonal Fisher information of the shared layer's weights, summed per hidden
    unit (per filter, as Task2Vec averages a filter's weights):
    ``F_h = E_z E_{y ~ p(y|z)} [ (d log p(y|z) / d h_h)^2 ] * 1[h_h > 0] * |z|^2``, with
    ``E_y (d log p / d h)^2 = W^T (diag(p) - p p^T) W``. The model's own predictive distribution is used
    (the "true Fisher"), so a task the head separates with confidence has little Fisher. The head has one
    row per class, but ``F`` lives on the shared units, so tasks of any class count compare. Returned:
    the square root of ``F`` normalised to sum 1 (which units the task uses; the cosine of two such vectors
    is the Bhattacharyya coefficient of the two shares), then ``log`` of its total (how much).
    """
    x, labels = labelled_features(tokens)
    n_classes = int(labels.max()) + 1
    z = x - x.mean(0)
    z /= max(float(np.linalg.norm(z, axis=1).mean()), 1e-12)
    weights, bias = _probe_layer(z.shape[1])
    pre = z @ weights.T + bias
    hidden = np.maximum(pre, 0.0)
    fisher = np.zeros(weights.shape[0])
    if n_classes > 1:
        head, head_bias = _fit_head(hidden, labels, n_classes)
        logits = hidden @ head.T + head_bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        # E_y[(dlogp/dh_h)^2] = sum_c p_c W_ch^2 - (sum_c p_c W_ch)^2, per image and hidden unit
        expected = p @ head**2 - (p @ head) ** 2  # (n, H)
        active = (pre > 0).astype(np.float64)
        norms = (z**2).sum(1, keepdims=True)
        class_weight = 1.0 / (np.bincount(labels, minlength=n_classes)[labels] * n_classes)
        fisher = (class_weight[:, None] * expected * active * norms).sum(0)
    total = float(fisher.sum())
    share = fisher / total if total > 0 else np.full_like(fisher, 1.0 / len(fisher))
    return np.concatenate([np.sqrt(share), [_log(total)]])


def separability_task2vec(tokens: DatasetTokens) -> np.ndarray:
    """:func:`separability_statistics` then :func:`task2vec` (the blocks :data:`DESCRIPTORS` weighs equally)."""
    return np.concatenate([separability_statistics(tokens), task2vec(tokens)])


def mean_descriptor(tokens: DatasetTokens) -> np.ndarray:
    """Today's descriptor: :func:`ml_core.images.dataset_descriptor`, the unit mean feature."""
    return dataset_descriptor(tokens).astype(np.float64)


@dataclass(frozen=True)
class Descriptor:
    """A registered descriptor: ``fn(tokens) -> (d,)``; ``standardise``: compared after per-dimension
    standardisation over the reference datasets (False: by cosine as it is); ``blocks``: the sizes of
    blocks weighted equally after standardisation (empty: one block); ``count_invariant``: the vector does
    not change when every image is repeated (what the tests hold it to)."""

    name: str
    fn: Callable[[DatasetTokens], np.ndarray]
    standardise: bool = True
    blocks: tuple[int, ...] = ()
    count_invariant: bool = False


DESCRIPTORS: dict[str, Descriptor] = {d.name: d for d in (
    Descriptor("mean", mean_descriptor, standardise=False, count_invariant=True),
    Descriptor("scatter", scatter_statistics, count_invariant=True),
    Descriptor("separability", separability_statistics),
    Descriptor("task2vec", task2vec),
    Descriptor("separability+task2vec", separability_task2vec,
               blocks=(len(SEPARABILITY_NAMES), TASK2VEC_HIDDEN + 1)),
)}


def describe(name: str, tokens: DatasetTokens) -> np.ndarray:
    """Descriptor ``name`` (one of :data:`DESCRIPTORS`) of a dataset's tokens."""
    if name not in DESCRIPTORS:
        raise KeyError(f"unknown dataset descriptor {name!r}; known: {sorted(DESCRIPTORS)}")
    return np.asarray(DESCRIPTORS[name].fn(tokens), dtype=np.float64)


def describe_all(names: Sequence[str], tokens: Mapping[str, DatasetTokens]) -> dict[str, dict[str, np.ndarray]]:
    """``{descriptor: {dataset: vector}}`` for every name and dataset (each a pure function of its own tokens)."""
    return {name: {d: describe(name, t) for d, t in tokens.items()} for name in names}


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 1e-12, norms, 1.0)


@dataclass
class DescriptorSpace:
    """Cosine similarity between descriptors of one kind, fitted on reference vectors ``(T, d)`` only.

    With ``standardise``, each dimension is centred and scaled by its mean and std over the reference
    (a constant dimension is dropped: scale 0), and each block of ``blocks`` is divided by the square root of
    its size, so that blocks weigh the same whatever their width."""

    reference: np.ndarray  # (T, d) as described
    standardise: bool = True
    blocks: tuple[int, ...] = ()
    centre: np.ndarray = field(init=False)
    scale: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        ref = np.asarray(self.reference, dtype=np.float64)
        dim = ref.shape[1]
        if not self.standardise:
            self.centre, self.scale = np.zeros(dim), np.ones(dim)
            return
        self.centre = ref.mean(0)
        std = ref.std(0)
        self.scale = np.where(std > 1e-9, 1.0 / np.where(std > 1e-9, std, 1.0), 0.0)
        if self.blocks:
            if sum(self.blocks) != dim:
                raise ValueError(f"blocks {self.blocks} do not add up to the descriptor's {dim} dimensions")
            self.scale = self.scale * np.repeat([1.0 / np.sqrt(b) for b in self.blocks], self.blocks)

    @classmethod
    def for_descriptor(cls, name: str, reference: np.ndarray) -> DescriptorSpace:
        spec = DESCRIPTORS[name]
        return cls(reference, standardise=spec.standardise, blocks=spec.blocks)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(np.asarray(vectors, dtype=np.float64)) - self.centre) * self.scale

    def similarity(self, target: np.ndarray) -> np.ndarray:
        """Cosine similarity ``(T,)`` of ``target (d,)`` to every reference vector, in the fitted space."""
        return _unit(self.transform(self.reference)) @ _unit(self.transform(target))[0]


def rank_agreement(accuracy_a: np.ndarray, accuracy_b: np.ndarray) -> float:
    """Spearman correlation of two datasets' results over the models both have (0 if under 3, or constant)."""
    both = ~np.isnan(accuracy_a) & ~np.isnan(accuracy_b)
    if both.sum() < 3 or np.ptp(accuracy_a[both]) == 0 or np.ptp(accuracy_b[both]) == 0:
        return 0.0
    return float(spearmanr(accuracy_a[both], accuracy_b[both]).statistic)


def _agreements(labels: np.ndarray) -> np.ndarray:
    """``(P, P)`` Spearman correlations of the rows of ``labels (P, N)`` over the models both rows have."""
    filled = np.where(np.isnan(labels), np.nanmean(labels, axis=1, keepdims=True), labels)
    if not np.isnan(labels).any():  # the common case: one rank transform, one product
        ranks = rankdata(filled, axis=1)  # ties share their mean rank, as Spearman's
        ranks -= ranks.mean(1, keepdims=True)
        norms = np.linalg.norm(ranks, axis=1)
        out = (ranks @ ranks.T) / np.maximum(np.outer(norms, norms), 1e-12)
        out[(norms[:, None] == 0) | (norms[None, :] == 0)] = 0.0
        return out
    return np.array([[rank_agreement(a, b) for b in labels] for a in labels])


def metric_pairs(groups: Sequence[frozenset[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i, j)``, ``i < j``, of the examples whose families (``groups``: a set per example, several
    for a task mixing datasets of several families) are disjoint: the pairs a cross-family metric learns from."""
    i, j = np.triu_indices(len(groups), 1)
    keep = np.array([not (groups[a] & groups[b]) for a, b in zip(i, j, strict=True)], dtype=bool)
    return i[keep], j[keep]


def fit_metric_weights(z: np.ndarray, labels: np.ndarray, groups: Sequence[frozenset[str]],
                       ridge: float) -> tuple[np.ndarray, float]:
    """Non-negative weights ``(d,)`` and an intercept such that ``intercept - sum_k w_k (z_ik - z_jk)^2``
    predicts the agreement of rows ``i`` and ``j`` of ``labels (P, N)`` (their zoo rankings), least squares
    over every pair whose ``groups`` (families) are disjoint, ridge ``ridge`` x number of pairs towards 0.
    Solved from the normal equations (``d x d``), so many pairs cost little."""
    z = np.asarray(z, dtype=np.float64)
    i, j = metric_pairs(groups)
    if len(i) < 2:
        return np.full(z.shape[1], 1.0 / max(z.shape[1], 1)), 0.0
    target = _agreements(labels)[i, j]
    design = -((z[i] - z[j]) ** 2)  # (pairs, d)
    d_mean, t_mean = design.mean(0), target.mean()
    centred = design - d_mean
    gram = centred.T @ centred + ridge * len(i) * np.eye(z.shape[1])
    chol = np.linalg.cholesky(gram)  # min |A w - b|^2 + lambda |w|^2 = |L^T w - L^-1 A^T b|^2 + const
    weights, _ = nnls(chol.T, np.linalg.solve(chol, centred.T @ (target - t_mean)))
    return weights, float(t_mean - d_mean @ weights)


@dataclass
class LearnedMetric:
    """A diagonal metric on a standardised descriptor (:func:`fit_metric_weights`), learned on reference
    datasets ``(T, d)`` with their accuracies ``(T, N)`` and families, and optionally on extra examples
    (sampled tasks of those datasets: ``extra_vectors (E, d)`` as described, ``extra_labels (E, N)`` their
    proxy rankings, ``extra_groups`` the families their images come from): pairs of examples of DIFFERENT
    families whose zoo rankings agree should lie close. Pairs sharing a family are left out: the metric must
    learn what carries ACROSS families. ``similarity`` is the predicted agreement, on the Spearman scale,
    to every reference dataset."""

    space: DescriptorSpace
    accuracy: np.ndarray
    families: Sequence[str]
    ridge: float = 1.0
    extra_vectors: np.ndarray | None = None
    extra_labels: np.ndarray | None = None
    extra_groups: Sequence[frozenset[str]] = ()
    weights: np.ndarray = field(init=False)
    intercept: float = field(init=False)

    def __post_init__(self) -> None:
        z = self.space.transform(self.space.reference)
        labels = np.asarray(self.accuracy, dtype=np.float64)
        groups = [frozenset([f]) for f in self.families]
        if self.extra_vectors is not None and len(self.extra_vectors):
            z = np.concatenate([z, self.space.transform(self.extra_vectors)])
            labels = np.concatenate([labels, np.asarray(self.extra_labels, dtype=np.float64)])
            groups += [frozenset(g) for g in self.extra_groups]
        self.weights, self.intercept = fit_metric_weights(z, labels, groups, self.ridge)

    def similarity(self, target: np.ndarray) -> np.ndarray:
        z = self.space.transform(self.space.reference)
        return self.intercept - ((z - self.space.transform(target)) ** 2) @ self.weights
