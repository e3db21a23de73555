"""Ground truth: performance tables, measured transfer, transferability scores, ranks.

Imports :mod:`ml_core.artifacts`, :mod:`ml_core.weights` and :mod:`ml_core.images` only.

* :mod:`~ml_core.ground_truth.tables`: the performance table a user brings (JSON / CSV), normalised;
* :mod:`~ml_core.ground_truth.transfer`: the fixed, seeded fine-tune (or probe) protocol that measures
  one (model, dataset) cell, and the test that a dataset's column carries ranking information;
* :mod:`~ml_core.ground_truth.transferability`: LogME and H-score on a model's features of a target;
* :mod:`~ml_core.ground_truth.columns`: a dataset's column of those measurements over the zoo, cell by cell;
* :mod:`~ml_core.ground_truth.ranks`: per-dataset ranks and scores from a table.
"""

from ml_core.ground_truth.columns import (
    TransferabilityConfig,
    TransferColumn,
    ZooCell,
    ZooEntryLike,
    column_inputs,
    measured_table,
    scoring_images,
    transfer_column,
    transfer_outcome,
    transferability_column,
    transferability_outcome,
    zoo_cells,
)
from ml_core.ground_truth.ranks import (
    GROUND_TRUTH_COLUMNS,
    GroundTruth,
    KeyedGroundTruth,
    ground_truth_ranks,
    keyed_ground_truth,
)
from ml_core.ground_truth.tables import (
    COLUMNS,
    MODEL_NAME_SEPARATOR,
    OPTIONAL_COLUMNS,
    LoadReport,
    NameReport,
    PerformanceRecord,
    PerformanceTable,
    PerformanceTableError,
    check_names,
    load_performance_table,
    normalize_name,
)
from ml_core.ground_truth.transfer import (
    TRANSFER_CODE_VERSION,
    LabelledImages,
    MeasurementConfig,
    SpreadConfig,
    SpreadReport,
    TableSpread,
    TransferError,
    TransferProtocol,
    TransferResult,
    assess_spread,
    cell_key,
    load_split,
    load_zoo_model,
    measure_transfer,
    table_spread,
    to_model_input,
    torch_threads,
    transfer_card,
)
from ml_core.ground_truth.transferability import (
    evidence,
    h_score,
    logme,
    logme_fit,
    model_features,
    transferability_report,
)

__all__ = [
    "COLUMNS",
    "GROUND_TRUTH_COLUMNS",
    "MODEL_NAME_SEPARATOR",
    "OPTIONAL_COLUMNS",
    "TRANSFER_CODE_VERSION",
    "GroundTruth",
    "KeyedGroundTruth",
    "LabelledImages",
    "MeasurementConfig",
    "SpreadConfig",
    "TransferColumn",
    "TransferabilityConfig",
    "ZooCell",
    "ZooEntryLike",
    "LoadReport",
    "NameReport",
    "PerformanceRecord",
    "PerformanceTable",
    "PerformanceTableError",
    "SpreadReport",
    "TableSpread",
    "TransferError",
    "TransferProtocol",
    "TransferResult",
    "assess_spread",
    "cell_key",
    "check_names",
    "column_inputs",
    "evidence",
    "ground_truth_ranks",
    "h_score",
    "keyed_ground_truth",
    "load_performance_table",
    "load_split",
    "load_zoo_model",
    "logme",
    "logme_fit",
    "measure_transfer",
    "measured_table",
    "model_features",
    "normalize_name",
    "scoring_images",
    "table_spread",
    "to_model_input",
    "torch_threads",
    "zoo_cells",
    "transfer_card",
    "transfer_column",
    "transfer_outcome",
    "transferability_column",
    "transferability_outcome",
    "transferability_report",
]
