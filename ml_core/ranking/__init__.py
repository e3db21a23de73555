"""Ranking: the learned rankers, their training data and losses, shortlists, recommendations.

Imports :mod:`ml_core.artifacts`, :mod:`ml_core.images`, :mod:`ml_core.ground_truth` and the
shared trainer and metrics only.

* :mod:`~ml_core.ranking.models`: ``RankingCrossAttentionTransformer`` and its config;
* :mod:`~ml_core.ranking.data`: the ranking corpus and its DataLoader;
* :mod:`~ml_core.ranking.splits`: seeded train / val / test splits of datasets by family;
* :mod:`~ml_core.ranking.features`: the baselines' opinions as per-(dataset, model) inputs;
* :mod:`~ml_core.ranking.losses`: ListMLE, pairwise logistic, the temperature schedule;
* :mod:`~ml_core.ranking.training`: train, save, load and apply a ranker;
* :mod:`~ml_core.ranking.shortlist`: which models a two-stage run measures;
* :mod:`~ml_core.ranking.budget`: a budget of ``k`` forward passes: which models to measure, one at a
  time, and the others predicted from how results co-vary in the history;
* :mod:`~ml_core.ranking.recommend`: the table a user reads;
* :mod:`~ml_core.ranking.pareto`: each model's costs beside it, the Pareto front of score vs cost, budgets;
* :mod:`~ml_core.ranking.explain`: what drove a recommendation (nearest datasets, source similarity);
* :mod:`~ml_core.ranking.baselines`: every ranker that needs no learning.
"""

from ml_core.ranking.data import (
    ModelTokenNormalizer,
    RankingCorpus,
    TokenMode,
    accuracy_matrix,
    build_combined_similarity_loader,
    build_ranking_loader,
    dataset_token_set,
    ranking_corpus,
    ranks_from_accuracy,
    scores_from_accuracy,
)
from ml_core.ranking.features import (
    FEATURE_NAMES,
    HISTORY_FEATURES,
    N_BASELINE_FEATURES,
    BaselineReference,
    zscore,
    zscore_known,
)
from ml_core.ranking.losses import TemperatureSchedule, list_mle_loss, pairwise_logistic_loss
from ml_core.ranking.models import RankerConfig, RankingCrossAttentionTransformer
from ml_core.ranking.pareto import COST_COLUMNS, BudgetFilter, front_plot, pareto_front, with_costs, within_budget
from ml_core.ranking.explain import RankingExplanation, explain_ranking, nearest_datasets
from ml_core.ranking.recommend import Recommendation, RecommendationConfig, recommend, recommendation_table
from ml_core.ranking.budget import BudgetConfig, BudgetedRanking, budgeted_ranking
from ml_core.ranking.shortlist import (
    coverage_shortlist,
    default_shortlist_size,
    history_regret,
    rerank_shortlist,
    top_k,
    two_stage_shortlist,
)
from ml_core.ranking.splits import SPLITS, assign_dataset_splits
from ml_core.ranking.training import (
    RankerArtifact,
    RankerFitConfig,
    RankerTrainer,
    RankerTrainingConfig,
    baseline_reference,
    evaluate_rankers,
    fit_ranker,
    product_ranker,
    train_ranker,
    with_baseline_features,
)

__all__ = [
    "COST_COLUMNS",
    "BudgetFilter",
    "front_plot",
    "pareto_front",
    "with_costs",
    "within_budget",
    "RankingExplanation",
    "explain_ranking",
    "nearest_datasets",
    "FEATURE_NAMES",
    "HISTORY_FEATURES",
    "N_BASELINE_FEATURES",
    "SPLITS",
    "BaselineReference",
    "BudgetConfig",
    "BudgetedRanking",
    "ModelTokenNormalizer",
    "RankerArtifact",
    "RankerConfig",
    "RankerFitConfig",
    "RankerTrainer",
    "RankerTrainingConfig",
    "RankingCorpus",
    "Recommendation",
    "RecommendationConfig",
    "RankingCrossAttentionTransformer",
    "TemperatureSchedule",
    "TokenMode",
    "accuracy_matrix",
    "assign_dataset_splits",
    "baseline_reference",
    "budgeted_ranking",
    "build_combined_similarity_loader",
    "build_ranking_loader",
    "coverage_shortlist",
    "dataset_token_set",
    "default_shortlist_size",
    "evaluate_rankers",
    "fit_ranker",
    "history_regret",
    "list_mle_loss",
    "pairwise_logistic_loss",
    "product_ranker",
    "ranking_corpus",
    "ranks_from_accuracy",
    "recommend",
    "recommendation_table",
    "rerank_shortlist",
    "scores_from_accuracy",
    "top_k",
    "train_ranker",
    "two_stage_shortlist",
    "with_baseline_features",
    "zscore",
    "zscore_known",
]
