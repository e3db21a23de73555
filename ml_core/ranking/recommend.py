"""Rank a whole zoo for one dataset: the table a user reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_core.images import DatasetTokens, dataset_descriptor
from ml_core.metrics import ranking_report, ranks_from_scores
from ml_core.ranking.baselines import data_free_prior
from ml_core.ranking.budget import BudgetConfig, Measurement, Method, Selection, budgeted_ranking
from ml_core.ranking.data import accuracy_matrix
from ml_core.ranking.explain import RankingExplanation, explain_ranking
from ml_core.ranking.shortlist import default_shortlist_size, two_stage_shortlist
from ml_core.ranking.training import RankerArtifact


def recommendation_table(
    model_names: list[str],
    scores: np.ndarray,
    *,
    prior_scores: np.ndarray | None = None,
    accuracy: np.ndarray | None = None,
    shortlist: np.ndarray | None = None,
    measured: dict[int, float] | None = None,
    explanation: RankingExplanation | None = None,
) -> pd.DataFrame:
    """One row per model, best first: ``rank`` (0 = best), ``model``, ``score`` (higher = better).

    Optional columns: ``shortlist`` (True for the models a two-stage run should pass through LogME,
    given as their indices), ``measured`` / ``measured_value`` (the models a budgeted run measured on
    the target, ``{index: proxy value}``, in the order they were measured), ``prior_score`` (the
    data-free prior, for comparison), ``accuracy`` and ``true_rank`` when the dataset's results are known;
    with an ``explanation`` (:mod:`ml_core.ranking.explain`), what drove each score: ``nearest_datasets``
    (the nearest training datasets and their similarity, the same on every row), ``nearest_score`` (the
    model's results there) and ``source_similarity``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    frame = pd.DataFrame({"model": model_names, "score": scores})
    frame.insert(0, "rank", ranks_from_scores(scores))
    if shortlist is not None:
        frame["shortlist"] = np.isin(np.arange(len(scores)), np.asarray(shortlist, dtype=int))
    if measured is not None:
        order = {j: i for i, j in enumerate(measured)}
        frame["measured"] = [order.get(j, -1) for j in range(len(scores))]  # -1: not measured
        frame["measured_value"] = [measured.get(j, np.nan) for j in range(len(scores))]
    if prior_scores is not None:
        frame["prior_score"] = np.asarray(prior_scores, dtype=np.float64)
    if explanation is not None:
        frame["nearest_datasets"] = explanation.nearest_text()
        frame["nearest_score"] = explanation.nearest_score
        frame["source_similarity"] = explanation.source_similarity
    if accuracy is not None:
        acc = np.asarray(accuracy, dtype=np.float64)
        frame["accuracy"] = acc
        true_rank = np.full(len(acc), -1, dtype=np.int64)
        known = ~np.isnan(acc)
        if known.any():
            true_rank[known] = ranks_from_scores(acc[known])
        frame["true_rank"] = true_rank
    return frame.sort_values(["rank", "model"], kind="stable").reset_index(drop=True)


BUDGET_PROXIES = ("probe", "logme", "probe+logme")


@dataclass(frozen=True)
class RecommendationConfig:
    """What a recommendation shows: the models named in its summary (``top_k_shown``) and the size of the
    two-stage shortlist (``shortlist_size``; 0: a third of the zoo).

    ``forward_passes`` is the budget: 0 ranks with the trained ranker alone (no forward pass); ``k > 0``
    measures ``k`` models on the dataset's labelled training images, one at a time, by ``budget_proxy``
    (``"probe"``: a 4-fold linear probe, ``"logme"``, or ``"probe+logme"``: both, read off the same
    features, LogME blended in by ``budget_second_weight``) and ranks the zoo by the budgeted mode
    (:mod:`ml_core.ranking.budget`: what the history of the ranker's training datasets says of every
    model once the measured ones are known), with the ``budget_*`` fields as
    :class:`~ml_core.ranking.BudgetConfig`'s (``budget_blend``: its ``measured_weight``; ``budget_second_weight``:
    its ``second_weight``, used with ``probe+logme`` only). The defaults are the setting the held-out
    evaluation's validation folds preferred among the rules that find the best model (expected gain);
    ``"uncertainty"`` orders the whole zoo slightly better at a worse top-1 regret (README, "The all-pass
    bar, and uncertainty sampling").
    """

    top_k_shown: int = 10
    shortlist_size: int = 0
    forward_passes: int = 0
    budget_proxy: str = "probe"
    budget_method: Method = "gaussian"
    budget_selection: Selection = "expected_gain"
    budget_noise: float = 0.05
    budget_shrinkage: float = 0.2
    budget_strength: float = 1.0
    budget_blend: float = 0.5
    budget_second_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.budget_proxy not in BUDGET_PROXIES:
            raise ValueError(f"budget_proxy must be one of {BUDGET_PROXIES}, got {self.budget_proxy!r}")
        if self.budget_proxy == "logme" and self.budget_method == "gaussian":
            raise ValueError("budget_method 'gaussian' reads an accuracy: use budget_proxy 'probe' or 'probe+logme', or 'mixture'")
        self.budget()  # validates the rest

    def budget(self) -> BudgetConfig:
        return BudgetConfig(passes=self.forward_passes, method=self.budget_method, strength=self.budget_strength,
                            measured_weight=self.budget_blend, noise=self.budget_noise,
                            shrinkage=self.budget_shrinkage, selection=self.budget_selection,
                            second_weight=self.budget_second_weight if self.budget_proxy == "probe+logme" else 0.0)

    def proxies(self) -> tuple[str, ...]:
        """The scores each measured model's pass returns, in order: ``("probe",)``, ``("logme",)`` or both."""
        return tuple(self.budget_proxy.split("+"))


@dataclass(frozen=True)
class Recommendation:
    """The ranked zoo for one dataset (:func:`recommendation_table`) and what the UI says of it."""

    table: pd.DataFrame
    summary: dict[str, Any]


def recommend(
    ranker: RankerArtifact,
    dataset: str,
    tokens: DatasetTokens,
    model_names: list[str],
    model_tokens: np.ndarray,
    ranks: pd.DataFrame,
    config: RecommendationConfig,
    model_sources: np.ndarray | None = None,
    measure: Callable[[int], Measurement] | None = None,
) -> Recommendation:
    """Rank every model for ``dataset`` with the trained ``ranker``, or, with ``config.forward_passes > 0``,
    by the budgeted mode, which calls ``measure(j)`` (model ``j``'s values on the dataset of each of
    :meth:`RecommendationConfig.proxies`: one float, or a tuple for two) that many times; ``measured_value``
    is the first proxy's value (the probe's accuracy, unless the proxy is LogME alone).

    Beside the score: the data-free prior of the ranker's training datasets, the dataset's measured
    accuracies when the ground truth ``ranks`` has them (then the ranking's metrics go in the summary),
    the two-stage shortlist (the ranker's top picks, then the coverage of past results), and what drove
    each score (:func:`~ml_core.ranking.explain.explain_ranking`: nearest training datasets, the model's
    results there, its source similarity; the prior is ``prior_score``).
    """
    scores = ranker_scores = ranker.score(tokens, model_tokens, model_names, model_sources)
    measured = None
    if config.forward_passes > 0:
        history = ranker.history(model_names)
        if measure is None or history is None:
            raise ValueError("a budget of forward passes needs a measure and a ranker that keeps its history")
        run = budgeted_ranking(history, measure, config.budget())
        scores, measured = run.scores, dict(zip(run.measured, run.values, strict=True))
    labelled = set(ranks["dataset_key"])
    splits = ranker.info.get("splits", {})
    train = [d for d, split in splits.items() if split == "train" and d in labelled]
    prior = data_free_prior(accuracy_matrix(ranks, train, model_names)) if train else None
    accuracy = accuracy_matrix(ranks, [dataset], model_names)[0] if dataset in labelled else None
    k = config.shortlist_size or default_shortlist_size(len(model_names))
    short = two_stage_shortlist(scores, ranker.history(model_names), k)
    why = explain_ranking(ranker.reference, dataset_descriptor(tokens), model_names, model_sources)
    table = recommendation_table(model_names, scores, prior_scores=prior, accuracy=accuracy, shortlist=short,
                                 measured=measured, explanation=why)
    summary: dict[str, Any] = {
        "n_models": len(model_names),
        "split": splits.get(dataset, "unlabelled"),
        "top_models": table["model"].head(config.top_k_shown).tolist(),
        "shortlist": [model_names[i] for i in short],
        "ranking": f"budget of {config.forward_passes} passes ({config.budget_proxy})" if measured is not None
        else "ranker",
        "forward_passes": config.forward_passes,
        "measured": {model_names[j]: float(v) for j, v in (measured or {}).items()},
        "nearest_datasets": [[name, sim] for name, sim in why.nearest],
    }
    if accuracy is not None and np.sum(~np.isnan(accuracy)) >= 2:
        summary["ranker"] = ranking_report(accuracy, ranker_scores)
        if measured is not None:
            summary["budget"] = ranking_report(accuracy, scores)
        if prior is not None:
            summary["prior"] = ranking_report(accuracy, prior)
    return Recommendation(table, summary)
