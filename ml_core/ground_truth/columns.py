"""A dataset's column of measurements over the zoo: transfer accuracies, or transferability scores.

Both are measured one (model, dataset) *cell* at a time, so that a new model costs its own cells
only: the caller caches each cell (``measure``: ``cell -> (outcome, cache_hit)``) and this module
turns the cells' outcomes into the column. A cell's outcome is a dict, with an ``"error"`` when the
model could not be measured (recorded, not fatal: one broken model spoils only its own cells).

* :func:`zoo_cells`: the zoo's models as cells, each with its checkpoint hash and transfer card
  (or why it has none);
* :func:`transfer_outcome` / :func:`transfer_column`: fine-tune (or probe) accuracies and the
  column's spread report;
* :func:`scoring_images` / :func:`scored_outcome` / :func:`transferability_outcome` /
  :func:`transferability_column`: LogME, H-score and the linear probe of each model's features of the
  target's images (cached: :mod:`~ml_core.ground_truth.features`), with the forward pass's seconds;
  :func:`transferability_content`: the column's content hash, without the seconds (a data version);
* :func:`measured_table`: the measured columns as one performance table, degenerate ones left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ml_core.artifacts import stable_json
from ml_core.progress import progress
from ml_core.ground_truth.tables import PerformanceTable, PerformanceTableError
from ml_core.ground_truth.transfer import (
    LabelledImages,
    SpreadConfig,
    SpreadReport,
    TransferError,
    TransferProtocol,
    assess_spread,
    load_zoo_model,
    measure_transfer,
    torch_threads,
    transfer_card,
)
from ml_core.ground_truth.features import FeaturesLike, compute_features, scoring_selection, zoo_model_runner
from ml_core.ground_truth.transferability import transferability_report
from ml_core.weights import ModelCard


class ZooEntryLike(Protocol):
    """What a cell needs of a zoo entry (see ``resources.model_zoo.ZooEntry``)."""

    name: str
    key: str
    path: Path
    architecture: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ZooCell:
    """One zoo model as the measurements see it: its checkpoint's hash and card (or why it has none)."""

    name: str
    key: str
    path: Path
    architecture: str | None  # a library architecture the checkpoint is loaded into, if any
    card: ModelCard | None
    problem: str | None
    checkpoint_sha256: str
    source_task: str | None = None

    def record(self, accuracy: float | None) -> dict[str, Any]:
        """The model's entry in the JSON performance-table format."""
        return {
            "model_name": self.name,
            "model_type": self.card.architecture if self.card else self.architecture,
            "accuracy": accuracy,
            "trained_on_dataset": self.source_task,
        }

    def input_hash(self) -> str:
        """What a column's cache key says of this model: its checkpoint and card (or the problem)."""
        card = self.card.transfer_fingerprint() if self.card else self.problem
        return hashlib.sha256(stable_json([self.checkpoint_sha256, card]).encode()).hexdigest()


def zoo_cells(entries: Iterable[ZooEntryLike], file_sha256: Callable[[Path], str]) -> list[ZooCell]:
    """The zoo's models as cells; ``file_sha256`` hashes each checkpoint (a cache, so once per content)."""
    cells = []
    for entry in entries:
        sha = file_sha256(entry.path)
        source = entry.metadata.get("source_task")
        try:
            card, problem = transfer_card(entry.metadata, entry.path), None
        except TransferError as err:
            card, problem = None, str(err)
        cells.append(ZooCell(entry.name, entry.key, entry.path, entry.architecture, card, problem, sha, source))
    return cells


def column_inputs(cells: Sequence[ZooCell]) -> dict[str, str]:
    """Cache-key inputs of a column: each model's checkpoint hash and card (or why it has none)."""
    return {f"model:{c.key}": c.input_hash() for c in cells}


# ----------------------------------------------------------------------------- transfer accuracy


def transfer_outcome(
    cell: ZooCell, split: Callable[[str], LabelledImages], protocol: TransferProtocol
) -> dict[str, Any]:
    """One cell's :class:`~ml_core.ground_truth.transfer.TransferResult` as a dict, or ``{"error": ...}``.
    ``split(name)`` gives a decoded split of the dataset (decoded once per column, on a cell miss only)."""
    try:
        model = load_zoo_model(cell.path, cell.card, architecture=cell.architecture)
        with torch_threads(1):
            return measure_transfer(model, cell.card, split(protocol.train_split), split(protocol.test_split),
                                    protocol).to_dict()
    except TransferError as err:  # a model that does not fit its card: recorded, not fatal
        return {"error": str(err)}


@dataclass(frozen=True)
class TransferColumn:
    """A dataset's measured column: records in table format, each measured model's result, the
    models that could not be measured (name -> why), the cells found in a cache, the spread report."""

    records: list[dict[str, Any]]
    results: dict[str, dict[str, Any]]
    problems: dict[str, str]
    n_cached: int
    spread: SpreadReport

    @property
    def best_model(self) -> str | None:
        return max(self.results, key=lambda m: self.results[m]["accuracy"]) if self.results else None


def transfer_column(
    cells: Sequence[ZooCell], measure: Callable[[ZooCell], tuple[dict[str, Any], bool]], spread: SpreadConfig
) -> TransferColumn:
    """Every cell measured (``measure(cell) -> (outcome, cache_hit)``), then the column's spread test."""
    records, results, problems, hits = [], {}, {}, 0
    for cell in progress(cells, desc="transfer (models)", unit="model", leave=False):
        if cell.card is None:
            problems[cell.name] = cell.problem
            records.append(cell.record(None))
            continue
        outcome, hit = measure(cell)
        hits += hit
        if "error" in outcome:
            problems[cell.name] = outcome["error"]
            records.append(cell.record(None))
        else:
            results[cell.name] = outcome
            records.append(cell.record(outcome["accuracy"]))
    measured = [r["accuracy"] for r in records if r["accuracy"] is not None]
    first = next(iter(results.values()), None)
    report = assess_spread(
        measured,
        chance=first["chance"] if first else 0.0,
        n_test=first["n_test"] if first else 0,
        z=spread.z,
        min_tolerance=spread.min_tolerance,
        saturation=spread.saturation,
    )
    return TransferColumn(records, results, problems, hits, report)


# ----------------------------------------------------------------------------- transferability scores


@dataclass(frozen=True)
class TransferabilityConfig:
    """Which images the forward-pass baselines score (a seeded subset of at most ``max_images`` of ``split``:
    what the cached features hold, :meth:`selection`) and how they are scored (the linear probe's folds and
    their seed: a change re-scores the cached features, with no forward pass)."""

    split: str = "train"
    max_images: int = 1000
    probe_folds: int = 4
    probe_seed: int = 0

    def selection(self) -> dict[str, Any]:
        """The image selection of the features these scores read (the features' cache key)."""
        return scoring_selection(self.split, self.max_images)


def scoring_images(data: LabelledImages, max_images: int) -> LabelledImages:
    """At most ``max_images`` of ``data``: a subset drawn with seed 0, in their original order."""
    keep = np.random.default_rng(0).permutation(len(data))[:max_images]
    keep.sort()
    ids = None if data.ids is None else [data.ids[i] for i in keep]
    return LabelledImages([data.images[i] for i in keep], data.labels[keep], data.classes, ids, data.skipped)


def scored_outcome(features: Callable[[], FeaturesLike], config: TransferabilityConfig) -> dict[str, Any]:
    """LogME, H-score and the linear probe of one model's features (``features()``: cached or computed), the
    number of images and the forward pass's seconds (the pass that computed them: the cost of this way of
    ranking), or ``{"error": ...}`` for a model that cannot run or features that cannot be scored."""
    try:
        table = features()
        report = transferability_report(table.load(), table.labels, probe_folds=config.probe_folds,
                                        probe_seed=config.probe_seed)
        return {**report, "n_images": table.n_images, "forward_seconds": table.forward_seconds}
    except (TransferError, ValueError) as err:  # a model that cannot run: recorded, not fatal
        return {"error": str(err)}


def transferability_outcome(cell: ZooCell, images: Callable[[], LabelledImages],
                            config: TransferabilityConfig | None = None) -> dict[str, Any]:
    """:func:`scored_outcome` of one model's features of ``images()``, computed in memory (nothing stored:
    a caller without a store; ``transferability_scores`` reads :func:`~ml_core.ground_truth.features.cached_model_features`)."""
    return scored_outcome(lambda: compute_features(zoo_model_runner(cell), images()), config or TransferabilityConfig())


#: fields of a transferability outcome that are measured wall-clock times: reported, never hashed
TIMING_FIELDS = frozenset({"forward_seconds"})


def without_timings(outcome: dict[str, Any]) -> dict[str, Any]:
    """``outcome`` without its :data:`TIMING_FIELDS` (what a content hash may read)."""
    return {k: v for k, v in outcome.items() if k not in TIMING_FIELDS}


def transferability_content(scores: dict[str, dict[str, Any]], problems: dict[str, str]) -> str:
    """The content hash of a transferability column: its scores and problems, without the forward passes'
    seconds. A wall-clock time differs from run to run, so hashing it made the data version differ on
    every run, on every machine and every worker (seen on 2026-12-03 between a local and a cluster run)."""
    payload = [{model: without_timings(s) for model, s in scores.items()}, problems]
    return hashlib.sha256(stable_json(payload).encode()).hexdigest()


def transferability_column(
    cells: Sequence[ZooCell], score: Callable[[ZooCell], tuple[dict[str, Any], bool]]
) -> tuple[dict[str, dict[str, Any]], dict[str, str], int]:
    """``(scores by model key, problems by model key, cells found in a cache)`` of a dataset."""
    scores, problems, hits = {}, {}, 0
    for cell in progress(cells, desc="transferability (models)", unit="model", leave=False):
        if cell.card is None:
            problems[cell.key] = cell.problem
            continue
        outcome, hit = score(cell)
        hits += hit
        if "error" in outcome:
            problems[cell.key] = outcome["error"]
        else:
            scores[cell.key] = outcome
    return scores, problems, hits


# ----------------------------------------------------------------------------- the measured table


def measured_table(
    columns: Iterable[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]],
) -> tuple[PerformanceTable, dict[str, str], dict[str, list[dict[str, Any]]]]:
    """The performance table of measured columns, each ``(summary, {dataset: records})`` of
    ``transfer_performance``: the table over the non-degenerate columns, the degenerate ones
    (name -> reason), and every measured column's records (degenerate ones included).

    Columns that were not measured (a table is given) are left out. Raises
    :class:`~ml_core.ground_truth.PerformanceTableError` when no informative column is left.
    """
    records: dict[str, list[dict[str, Any]]] = {}
    degenerate: dict[str, str] = {}
    for summary, table in columns:
        if not summary.get("measured"):
            continue
        for dataset, rows in table.items():
            records[dataset] = rows
            if summary["spread"]["degenerate"]:
                degenerate[dataset] = summary["spread"]["reason"]
    rows = [
        {"dataset": d, "model": r["model_name"], "accuracy": r["accuracy"], "model_type": r.get("model_type"),
         "trained_on_dataset": r.get("trained_on_dataset")}
        for d, rs in records.items() if d not in degenerate for r in rs
    ]
    if not rows:
        raise PerformanceTableError(
            "no performance table is configured and transfer_performance has no informative measured dataset "
            f"({len(records)} measured, {len(degenerate)} degenerate): materialize transfer_performance for the "
            "dataset partitions, or set MODELREC_PERFORMANCE_TABLE"
        )
    return PerformanceTable.from_frame(pd.DataFrame(rows), source="transfer_performance"), degenerate, records
