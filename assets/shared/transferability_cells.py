"""Shared by ``transferability_scores`` and ``model_recommendations``: one model's forward-pass scores on
one dataset (LogME, H-score, the linear probe), cached per cell.

A cell is keyed by the dataset's content, the checkpoint's content and its card, and the scoring config,
so a model measured by a budgeted recommendation is never run again by ``transferability_scores`` (and
the other way round): no second forward pass for the same (model, dataset content).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from upath import UPath

from assets.shared.artifacts import materialize_cached
from assets.shared.loaders import CELL_FILE
from ml_core.artifacts import stable_json, write_json
from ml_core.ground_truth import LabelledImages, TransferabilityConfig, ZooCell, load_split, scoring_images
from ml_core.ground_truth import transferability_outcome, without_timings
from resources.artifact_store import ArtifactStore

CELL_ASSET = "transferability_cell"
# 3: one content fingerprint per dataset and per checkpoint; 4: the linear probe beside LogME and H-score;
# 5: scores computed on one BLAS thread (bitwise the same in every process), seconds not hashed
CELL_CODE_VERSION = "5"


def dataset_images(path: Any, config: TransferabilityConfig) -> Callable[[], LabelledImages]:
    """``images()``: the dataset's scored images, decoded on the first call only (a cell hit decodes none)."""
    loaded: dict[str, LabelledImages] = {}

    def images() -> LabelledImages:
        if "data" not in loaded:
            loaded["data"] = scoring_images(load_split(path, config.split), config.max_images)
        return loaded["data"]

    return images


def cached_cell(store: ArtifactStore, cell: ZooCell, dataset_key: str, dataset_fingerprint: str,
                images: Callable[[], LabelledImages], config: TransferabilityConfig) -> tuple[dict[str, Any], bool]:
    """``(outcome, cache hit)`` of one cell: :func:`ml_core.ground_truth.transferability_outcome` (scores and
    the forward pass's seconds, or ``{"error": ...}``), computed only on a cache miss."""

    def build(directory: UPath) -> tuple[str, dict]:
        outcome = transferability_outcome(cell, images)
        write_json(directory / CELL_FILE, outcome)
        return hashlib.sha256(stable_json(without_timings(outcome)).encode()).hexdigest(), outcome

    result = materialize_cached(
        store, asset=CELL_ASSET, partition=dataset_key, code_version=CELL_CODE_VERSION, config=asdict(config),
        inputs={"dataset": dataset_fingerprint, "checkpoint": cell.checkpoint_sha256, "card": cell.input_hash()},
        build=build, log=None,  # one cell per model: no per-cell cache messages
    )
    return result.summary, result.cache_hit
