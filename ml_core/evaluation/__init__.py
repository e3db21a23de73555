"""Evaluation: folds that hold data out, the held-out comparison of rankers, the history study.

The top layer of :mod:`ml_core`: it may import every other package, and none imports it.

* :mod:`~ml_core.evaluation.folds`: leave-family-out, leave-models-out and the derived folds;
* :mod:`~ml_core.evaluation.evaluation`: every method on every fold, the variant chosen on
  validation, summaries and paired differences;
* :mod:`~ml_core.evaluation.variants`: the learned-ranker variants compared, as changes of one base;
* :mod:`~ml_core.evaluation.report`: paired differences, the summary table, the plot;
* :mod:`~ml_core.evaluation.history`: how ranking quality grows with the history of results.

The ranking metrics themselves are :mod:`ml_core.metrics` (shared with ranker training).
"""

from ml_core.evaluation.evaluation import (
    ENSEMBLE,
    METRICS,
    EvaluationConfig,
    EvaluationData,
    EvaluationResult,
    TokensWithout,
    candidate_variants,
    evaluate,
    evaluate_fold,
    evaluation_data,
    evaluation_folds,
    oracle_neighbour_scores,
    retrained_tokens,
    select_shortlist,
    select_variant,
    summarize,
    validation_score,
)
from ml_core.evaluation.folds import (
    Fold,
    leave_dataset_out_folds,
    leave_family_out_folds,
    leave_models_out_folds,
    subsample_training_families,
)
from ml_core.evaluation.history import (
    ALL,
    HistoryJob,
    doubling_slope,
    history_jobs,
    mean_and_standard_error,
    relatives_table,
    run_history_study,
    size_table,
)
from ml_core.evaluation.report import PLOTTED_METHODS, evaluation_plot, paired_differences, summary_markdown
from ml_core.evaluation.variants import DEFAULT_VARIANTS, VARIANT_SETS, VARIANTS, evaluation_base, variant_configs

__all__ = [
    "ALL",
    "DEFAULT_VARIANTS",
    "ENSEMBLE",
    "METRICS",
    "PLOTTED_METHODS",
    "VARIANTS",
    "VARIANT_SETS",
    "EvaluationConfig",
    "EvaluationData",
    "EvaluationResult",
    "Fold",
    "HistoryJob",
    "TokensWithout",
    "candidate_variants",
    "doubling_slope",
    "evaluate",
    "evaluate_fold",
    "evaluation_base",
    "evaluation_data",
    "evaluation_folds",
    "evaluation_plot",
    "history_jobs",
    "leave_dataset_out_folds",
    "leave_family_out_folds",
    "leave_models_out_folds",
    "mean_and_standard_error",
    "oracle_neighbour_scores",
    "paired_differences",
    "relatives_table",
    "retrained_tokens",
    "run_history_study",
    "select_shortlist",
    "select_variant",
    "size_table",
    "subsample_training_families",
    "summarize",
    "summary_markdown",
    "validation_score",
    "variant_configs",
]
