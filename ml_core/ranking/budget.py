"""A budget of forward passes: measure ``k`` models on the target, predict the others from the history.

``k = 0`` is the zero-pass ranking: the data-free prior. With ``k > 0`` the recommender runs ``k``
models on the target's labelled images (a linear probe or LogME on their features: the *proxy*) and
reads the rest off the performance table, the way Quick-Tune and zero-shot AutoML over model zoos
meta-learn from how models' results co-vary across past datasets:

* **the history as a mixture.** The target is taken to rank the zoo like one of the training datasets,
  unknown which. Each training dataset ``d`` starts with the same weight (so ``k = 0`` gives exactly the
  data-free prior, the mean of the min-max normalised rows); after measuring the models ``S``, its
  weight is ``exp(strength * z_d)``, where ``z_d = atanh(r_d) * sqrt(|S| - 2)`` is the Fisher statistic
  of the correlation ``r_d`` between the measured proxy values and ``d``'s results on ``S`` (two
  values always correlate perfectly: below 3 measurements the weights stay uniform). The prediction of every model is the
  weighted mean of the rows, its uncertainty their weighted spread.
* **the measured models' own values.** A measured model's proxy value is mapped onto the prediction's
  scale (matching the mean and spread of the predictions over ``S``) and blended with its prediction by
  ``measured_weight`` (0: the history alone decides, 1: the measurement alone).
* **or the history as a Gaussian over the zoo** (``method="gaussian"``, for a proxy that is an accuracy:
  the linear probe). The target's accuracies are ``c + mu_j + f_j``: ``mu_j`` is model ``j``'s mean
  advantage over the datasets' average in the history, ``c`` the target's unknown level (its variance
  the spread of the datasets' averages), ``f ~ N(0, Sigma)`` with ``Sigma`` the covariance of the
  models' residual results across the training datasets, shrunk towards its diagonal by ``shrinkage``
  (15 datasets cannot estimate a 25 x 25 covariance). A measurement is the model's accuracy plus noise of
  standard deviation ``noise``; the ranking is the posterior mean (kriging: the measured models
  included, each trusted as far as the noise allows), the uncertainty the posterior spread.
* **two proxies from one pass.** A forward pass gives the model's features, and both the linear probe
  and LogME are read off them. With ``second_weight > 0`` the measure returns both (``(probe, logme)``):
  the second is mapped onto the first's scale over the models measured so far (matching their mean and
  spread; LogME's scale is not an accuracy's and changes from dataset to dataset) and blended in by that
  weight before the history is conditioned on it. Two opinions with partly independent errors, at no
  extra cost: running every model is strongest when the probe and LogME are summed (README).
* **which model to measure next**: ``"expected_gain"`` -- the expected improvement over the best model
  found so far, ``E[max(0, y_j - y_best)]`` under ``N(mean_j, std_j)`` (the first pass goes to the
  predicted best); ``"top"`` -- greedily the predicted best not yet measured; ``"uncertainty"`` -- the
  model whose result the history is least sure of (the largest ``std_j``, the first pass included):
  uncertainty sampling, which spends the passes on learning the whole ranking rather than on finding
  its best model (weighted tau scores the whole list, top-1 regret only its head).

:func:`budgeted_ranking` runs the loop with any ``measure(j) -> float`` (the product runs a forward
pass; the evaluation reads cached cells), so each choice sees the results before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ml_core.ranking.baselines.prior import minmax_rows

Selection = Literal["expected_gain", "top", "uncertainty"]
Method = Literal["mixture", "gaussian"]
SELECTIONS: tuple[str, ...] = ("expected_gain", "top", "uncertainty")


@dataclass(frozen=True)
class BudgetConfig:
    """``passes``: forward passes spent on the target (``k``); ``method``: how the history predicts the
    unmeasured models (see the module docstring); for ``"mixture"``, ``strength`` (how sharply the
    measured correlations pick the history's datasets) and ``measured_weight`` (a measured model's own
    value against its prediction, in [0, 1]); for ``"gaussian"``, ``noise`` (a measurement's standard
    deviation, in accuracy) and ``shrinkage`` (of the models' covariance towards its diagonal, in [0, 1]);
    ``selection``: how the next model to measure is chosen; ``second_weight`` (in [0, 1)): the weight of
    a second proxy of the same pass (the measure then returns two values), see the module docstring."""

    passes: int = 5
    method: Method = "mixture"
    strength: float = 1.0
    measured_weight: float = 0.5
    noise: float = 0.05
    shrinkage: float = 0.5
    selection: Selection = "expected_gain"
    second_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.passes < 0:
            raise ValueError(f"passes must be >= 0, got {self.passes}")
        if not 0.0 <= self.measured_weight <= 1.0:
            raise ValueError(f"measured_weight must be in [0, 1], got {self.measured_weight}")
        if self.strength < 0:
            raise ValueError(f"strength must be >= 0, got {self.strength}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.method not in ("mixture", "gaussian"):
            raise ValueError(f"method must be 'mixture' or 'gaussian', got {self.method!r}")
        if not 0.0 <= self.second_weight < 1.0:
            raise ValueError(f"second_weight must be in [0, 1), got {self.second_weight}")
        if self.noise <= 0 or not 0.0 <= self.shrinkage <= 1.0:
            raise ValueError(f"noise must be > 0 and shrinkage in [0, 1], got {self.noise}, {self.shrinkage}")


@dataclass
class BudgetedRanking:
    """``scores (N,)`` (higher = better); ``measured``: model indices in the order they were measured, with
    their proxy ``values`` (the first proxy's, as measured) and ``second`` (the second proxy's, when the
    measure returned two); ``weights (T,)``: the final weight of each history dataset (the mixture only;
    None for the Gaussian); ``mean`` / ``std`` ``(N,)``: the history's prediction; ``trace``: the scores after 0, 1, ..., ``passes`` passes (a run
    with budget ``k`` is the first ``k`` passes of a longer one: each choice sees only what came before)."""

    scores: np.ndarray
    trace: list[np.ndarray] = field(default_factory=list)
    measured: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    second: list[float] = field(default_factory=list)
    weights: np.ndarray | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 0 else 0.0


def dataset_weights(norm: np.ndarray, measured: list[int], values: list[float], strength: float) -> np.ndarray:
    """Weights ``(T,)`` (sum 1) of the normalised history rows ``norm (T, N)`` given the proxy ``values``
    of the ``measured`` models: ``exp(strength * atanh(r_d) * sqrt(|S| - 2))``, uniform below 3."""
    t = len(norm)
    if len(measured) < 3 or strength == 0:
        return np.full(t, 1.0 / t)
    v = np.asarray(values, dtype=np.float64)
    evidence = np.zeros(t)
    for d in range(t):
        row = norm[d, measured]
        known = ~np.isnan(row)
        if known.sum() < 3:
            continue  # too few shared results to say anything: neutral
        r = np.clip(_correlation(v[known], row[known]), -0.999, 0.999)
        evidence[d] = math.atanh(r) * math.sqrt(known.sum() - 2)
    logits = strength * evidence
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def history_prediction(norm: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` ``(N,)`` of the normalised rows ``norm (T, N)`` under ``weights (T,)``; a model
    without any known result gets the mean of the others and the largest spread."""
    known = ~np.isnan(norm)
    w = weights[:, None] * known
    mass = w.sum(0)
    filled = np.where(known, norm, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(mass > 0, (w * filled).sum(0) / mass, np.nan)
        var = np.where(mass > 0, (w * (filled - np.nan_to_num(mean)) ** 2).sum(0) / mass, np.nan)
    std = np.sqrt(np.clip(var, 0.0, None))
    fill_mean = np.nanmean(mean) if np.any(~np.isnan(mean)) else 0.5
    fill_std = np.nanmax(std) if np.any(~np.isnan(std)) else 0.5
    return np.where(np.isnan(mean), fill_mean, mean), np.where(np.isnan(std), fill_std, std)


def combined_values(values: np.ndarray, second_weight: float) -> np.ndarray:
    """``(k,)`` values to condition the history on, from ``values (k,)`` or ``(k, 2)`` (two proxies of the
    same pass): the first, blended by ``second_weight`` with the second mapped onto the first's mean and
    spread over the ``k`` measured models (below two models, or without spread, the first alone)."""
    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    first = v[:, 0]
    if v.shape[1] < 2 or second_weight == 0 or len(v) < 2:
        return first
    second = v[:, 1]
    if first.std() == 0 or second.std() == 0:
        return first
    mapped = first.mean() + (second - second.mean()) / second.std() * first.std()
    return (1 - second_weight) * first + second_weight * mapped


def blended_scores(mean: np.ndarray, measured: list[int], values: list[float], measured_weight: float) -> np.ndarray:
    """The prediction ``mean (N,)`` with each measured model's value, mapped onto the prediction's scale
    over the measured models, blended in by ``measured_weight``."""
    scores = np.array(mean, dtype=np.float64)
    if not measured or measured_weight == 0:
        return scores
    v = np.asarray(values, dtype=np.float64)
    m = scores[measured]
    spread_v, spread_m = v.std(), m.std()
    if len(measured) > 1 and spread_v > 0:
        scale = spread_m if spread_m > 0 else float(np.std(scores)) or 1.0
        mapped = m.mean() + (v - v.mean()) / spread_v * scale
    else:
        mapped = m  # one measurement (or equal ones) orders nothing among the measured
    scores[measured] = (1 - measured_weight) * m + measured_weight * mapped
    return scores


def expected_gain(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """``E[max(0, y - best)]`` for ``y ~ N(mean, std)``, element-wise ``(N,)``."""
    from scipy.stats import norm as normal

    std = np.maximum(std, 1e-9)
    u = (mean - best) / std
    return (mean - best) * normal.cdf(u) + std * normal.pdf(u)


class GaussianZoo:
    """The history as a Gaussian over the zoo's accuracies on a new dataset (see the module docstring):
    ``prior (N,)`` and ``covariance (N, N)``, from ``history (T, N)`` accuracies (NaN = unknown)."""

    def __init__(self, history: np.ndarray, shrinkage: float):
        h = np.asarray(history, dtype=np.float64)
        h = h[~np.all(np.isnan(h), axis=1)]  # a past dataset without any result says nothing
        if len(h) == 0:
            raise ValueError("the history has no result: nothing to predict the unmeasured models from")
        level = np.nanmean(h, axis=1)  # (T,) each dataset's average
        centred = h - level[:, None]
        known = ~np.isnan(centred)
        counts = known.sum(0)
        advantage = np.where(known, centred, 0.0).sum(0) / np.maximum(counts, 1)  # (N,) 0 without a result
        residual = np.where(known, centred - advantage, 0.0)
        t = max(len(h) - 1, 1)
        sample = residual.T @ residual / t
        diagonal = np.diag(sample).copy()
        # a model with no past result: its advantage is unknown too, so it is more uncertain than any other
        unknown = ~known.any(0)
        seen = ~unknown
        diagonal[unknown] = (diagonal[seen].max() + float(np.var(advantage[seen]))) if seen.any() else 0.01
        covariance = (1 - shrinkage) * sample + shrinkage * np.diag(diagonal)
        covariance[unknown, :] = covariance[:, unknown] = 0.0
        covariance[unknown, unknown] = diagonal[unknown]
        level_var = float(np.var(level)) if len(level) > 1 else 0.01
        self.prior = float(level.mean()) + advantage
        self.covariance = covariance + level_var  # + the unknown level c, shared by every model

    def posterior(self, measured: list[int], values: list[float], noise: float) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` ``(N,)`` of every model's accuracy given the measured ``values``."""
        if not measured:
            return self.prior.copy(), np.sqrt(np.diag(self.covariance))
        cross = self.covariance[:, measured]  # (N, k)
        gram = self.covariance[np.ix_(measured, measured)] + noise**2 * np.eye(len(measured))
        weights = np.linalg.solve(gram, cross.T).T  # (N, k)
        mean = self.prior + weights @ (np.asarray(values) - self.prior[measured])
        var = np.diag(self.covariance) - np.sum(weights * cross, axis=1)
        return mean, np.sqrt(np.clip(var, 1e-12, None))


Prediction = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]  # scores, mean, std, weights


def _predictor(history: np.ndarray, config: BudgetConfig) -> Callable[[list[int], list[float]], Prediction]:
    """``predict(measured, values) -> (scores, mean, std, weights)`` of ``config.method`` over ``history``:
    the ranking after those measurements, the history's prediction and its spread, and the mixture's
    dataset weights (None for the Gaussian)."""
    if config.method == "gaussian":
        zoo = GaussianZoo(history, config.shrinkage)

        def gaussian(measured: list[int], values: list[float]) -> Prediction:
            mean, std = zoo.posterior(measured, values, config.noise)
            return mean, mean, std, None

        return gaussian
    norm = minmax_rows(np.asarray(history, dtype=np.float64))

    def mixture(measured: list[int], values: list[float]) -> Prediction:
        weights = dataset_weights(norm, measured, values, config.strength)
        mean, std = history_prediction(norm, weights)
        return blended_scores(mean, measured, values, config.measured_weight), mean, std, weights

    return mixture


Measurement = float | tuple[float, float]


def budgeted_ranking(history: np.ndarray, measure: Callable[[int], Measurement], config: BudgetConfig) -> BudgetedRanking:
    """Rank ``N`` models for a target from ``history (T, N)`` (the training datasets' accuracies, NaN =
    unknown) and at most ``config.passes`` calls of ``measure(j)`` (model ``j``'s proxy value on the
    target, higher = better, or, with ``config.second_weight > 0``, its two proxy values from the same pass;
    NaN: it could not be measured, and counts as a spent pass)."""
    predict = _predictor(history, config)
    measured: list[int] = []
    raw: list[np.ndarray] = []
    scores, mean, std, weights = predict(measured, [])
    trace = [scores]
    tried: set[int] = set()
    for _ in range(min(config.passes, len(scores))):
        choice = _next_model(trace[-1], std, measured, tried, config.selection)
        tried.add(choice)
        value = np.atleast_1d(np.asarray(measure(choice), dtype=np.float64))
        if np.all(np.isfinite(value)):  # else it could not be measured (NaN, of either proxy): a pass spent
            if config.second_weight > 0 and len(value) < 2:
                raise ValueError("second_weight > 0 needs a measure that returns two values per model (probe, LogME)")
            measured.append(choice)
            raw.append(value)
            scores, mean, std, weights = predict(measured, list(combined_values(np.stack(raw), config.second_weight)))
        trace.append(scores)
    first = [float(v[0]) for v in raw]
    second = [float(v[1]) for v in raw if len(v) > 1] if config.second_weight > 0 else []
    return BudgetedRanking(trace[-1], trace, measured, first, second, weights, mean, std)


def _next_model(current: np.ndarray, std: np.ndarray, measured: list[int], tried: set[int],
                selection: Selection) -> int:
    """The next model to measure: the largest expected gain over the best measured one (the predicted best
    first), the predicted best not yet tried, or the least certain one not yet tried."""
    open_ = np.array([j not in tried for j in range(len(current))])
    if selection == "uncertainty":
        return int(np.argmax(np.where(open_, std, -np.inf)))
    if selection == "expected_gain" and measured:
        gain = expected_gain(current, std, float(np.max(current[measured])))
        return int(np.argmax(np.where(open_, gain, -np.inf)))
    return int(np.argmax(np.where(open_, current, -np.inf)))
