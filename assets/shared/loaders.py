"""How each asset's artifact is laid out, and how it is read back as its ml_core object.

The one place that knows the files inside an artifact directory: an asset writes them with these
names, and :meth:`assets.shared.artifacts.Artifact.load` (what every downstream asset, the CLI and the
benchmarks call) reads them with :func:`load_artifact`. No asset module imports another's.

| asset | loads as |
| --- | --- |
| ``model_parameters`` | :class:`ml_core.weights.ModelParameters` (lazy zarr chunks) |
| ``model_source_tokens`` | :class:`ml_core.images.DatasetTokens`, or None when the card names no sample |
| ``autoencoder`` | :class:`ml_core.weights.TokenEncoderArtifact` or :class:`ml_core.weights.AutoEncoderArtifact` |
| ``model_embeddings`` | :class:`ml_core.weights.ModelEmbedding` |
| ``model_costs`` | :class:`ml_core.weights.ModelCosts` |
| ``dataset_tokens`` | :class:`ml_core.images.DatasetTokens` |
| ``transfer_performance`` | ``{dataset: [records]}`` (empty when skipped: a table is given) |
| ``result_history`` | the history frame (:data:`ml_core.ground_truth.HISTORY_COLUMNS`) |
| ``ground_truth_ranks`` | the ground-truth frame (``ml_core.ground_truth.GROUND_TRUTH_COLUMNS`` + keys) |
| ``ranking_transformer`` | :class:`ml_core.ranking.RankerArtifact` |
| ``model_recommendations`` | the recommendation frame (:func:`ml_core.ranking.recommendation_table`) |
| ``transferability_scores`` | ``{"scores": {model: {logme, h_score, ...}}, "problems": {model: why}}`` |
| ``embedding_probes`` | the probe frame (:func:`ml_core.evaluation.probes.probe_frame` rows, a ``seed`` column) |
| ``ranker_evaluation`` | ``{"summary": [...], "selected_variant": ..., ...}`` (rows in :data:`EVALUATION_ROWS_FILE`) |
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from upath import UPath

from ml_core.artifacts import read_json
from ml_core.ground_truth import as_history
from ml_core.images import read_dataset_tokens
from ml_core.ranking import RankerArtifact
from ml_core.weights import ModelCosts, ModelEmbedding, load_embedder, read_model_parameters

PARAMS_DIR = "params.zarr"
TOKENS_DIR = "tokens.zarr"
NO_SAMPLE_FILE = "none.txt"
TRANSFER_TABLE_FILE = "transfer_performance.json"
CELL_FILE = "cell.json"
RANKS_FILE = "ground_truth_ranks.parquet"
HISTORY_FILE = "result_history.parquet"
HISTORY_PLOT_FILE = "growth.png"
MEASURED_TABLE_FILE = "measured_performance.json"
RANKER_EVALUATION_FILE = "evaluation.json"
RECOMMENDATIONS_FILE = "recommendations.parquet"
SCORES_FILE = "transferability_scores.json"
EVALUATION_ROWS_FILE = "evaluation_rows.parquet"
EVALUATION_SUMMARY_FILE = "evaluation_summary.json"
EVALUATION_PLOT_FILE = "evaluation.png"
PROBES_FILE = "probes.parquet"
COSTS_FILE = "costs.json"
FRONT_PLOT_FILE = "cost_front.png"
TRAINING_FILES = ("history.json", "loss_curves.png")


def read_parquet(path: UPath) -> pd.DataFrame:
    with path.open("rb") as handle:
        return pd.read_parquet(handle)


def write_parquet(frame: pd.DataFrame, path: UPath) -> None:
    with path.open("wb") as handle:
        frame.to_parquet(handle, index=False)


def _source_tokens(directory: UPath) -> Any:
    path = directory / TOKENS_DIR
    return read_dataset_tokens(path) if path.exists() else None


LOADERS: dict[str, Callable[[UPath], Any]] = {
    "model_parameters": lambda d: read_model_parameters(d / PARAMS_DIR),
    "model_source_tokens": _source_tokens,
    "autoencoder": load_embedder,
    "model_embeddings": ModelEmbedding.load,
    "model_costs": lambda d: ModelCosts.from_dict(read_json(d / COSTS_FILE)),
    "dataset_tokens": lambda d: read_dataset_tokens(d / TOKENS_DIR),
    "transfer_performance": lambda d: read_json(d / TRANSFER_TABLE_FILE),
    "result_history": lambda d: as_history(read_parquet(d / HISTORY_FILE)),
    "ground_truth_ranks": lambda d: read_parquet(d / RANKS_FILE),
    "ranking_transformer": RankerArtifact.load,
    "model_recommendations": lambda d: read_parquet(d / RECOMMENDATIONS_FILE),
    "transferability_scores": lambda d: read_json(d / SCORES_FILE),
    "ranker_evaluation": lambda d: read_json(d / EVALUATION_SUMMARY_FILE),
    "embedding_probes": lambda d: read_parquet(d / PROBES_FILE),
}


def load_artifact(asset: str, directory: UPath) -> Any:
    """The ml_core object of ``asset``'s artifact in ``directory`` (see the table above)."""
    try:
        loader = LOADERS[asset]
    except KeyError:
        raise ValueError(f"no loader for the artifacts of {asset!r} (known: {sorted(LOADERS)})") from None
    return loader(directory)


def copy_training_outputs(local_dir: Any, directory: UPath) -> list[str]:
    """Copy what a :class:`~ml_core.trainer.BaseTrainer` wrote locally (history, loss plot) into an
    artifact directory; returns the names copied."""
    copied = []
    for name in TRAINING_FILES:
        source = Path(local_dir) / name
        if source.is_file():
            (directory / name).write_bytes(source.read_bytes())
            copied.append(name)
    return copied
