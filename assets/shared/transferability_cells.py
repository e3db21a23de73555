"""Shared by ``transferability_scores`` and ``model_recommendations``: one model's forward-pass scores on
one dataset (LogME, H-score, the linear probe), cached per cell, on top of the model's cached features.

Two caches, each keyed by what determines it:

* the features (:func:`ml_core.ground_truth.cached_model_features`, ``<root>/model_features/<dataset>/``):
  the model's penultimate features of the dataset's scored images, keyed by the checkpoint's content, its
  card, the dataset's content and the image selection (split, ``max_images``): one forward pass per
  (model, dataset content), whatever reads them;
* the cell (``<root>/transferability_cell/<dataset>/``): the scores, keyed as the features plus the whole
  scoring config (``probe_folds``, ...) and the scorers' code version. A cell miss with a features hit
  (a new scorer, another probe config) re-scores the stored features, with no forward pass.

So a model measured by a budgeted recommendation is never run again by ``transferability_scores`` (and
the other way round), and neither runs it again to score it another way.
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
from ml_core.ground_truth import FEATURES_CODE_VERSION, LabelledImages, ModelFeatures, TransferabilityConfig, ZooCell
from ml_core.ground_truth import cached_model_features, load_split, scored_outcome, scoring_images, without_timings
from resources.artifact_store import ArtifactStore

CELL_ASSET = "transferability_cell"
# 3: one content fingerprint per dataset and per checkpoint; 4: the linear probe beside LogME and H-score;
# 5: scores computed on one BLAS thread (bitwise the same in every process), seconds not hashed;
# 6: scored from the cached features artifact (the same values), probe folds and seed in the config
CELL_CODE_VERSION = "6"


def dataset_images(path: Any, config: TransferabilityConfig) -> Callable[[], LabelledImages]:
    """``images()``: the dataset's scored images, decoded on the first call only (a cell or features hit
    decodes none)."""
    loaded: dict[str, LabelledImages] = {}

    def images() -> LabelledImages:
        if "data" not in loaded:
            loaded["data"] = scoring_images(load_split(path, config.split), config.max_images)
        return loaded["data"]

    return images


def cell_features(store: ArtifactStore, cell: ZooCell, dataset_key: str, dataset_fingerprint: str,
                  images: Callable[[], LabelledImages], config: TransferabilityConfig) -> ModelFeatures:
    """The cell's model's features of the scored images, from the store or computed once and published."""
    return cached_model_features(store, cell, dataset=dataset_key, dataset_fingerprint=dataset_fingerprint,
                                 selection=config.selection(), images=images)[0]


def cached_cell(store: ArtifactStore, cell: ZooCell, dataset_key: str, dataset_fingerprint: str,
                images: Callable[[], LabelledImages], config: TransferabilityConfig) -> tuple[dict[str, Any], bool]:
    """``(outcome, cache hit)`` of one cell: :func:`ml_core.ground_truth.scored_outcome` (scores and the
    forward pass's seconds, or ``{"error": ...}``) of the cell's cached features, computed only on a miss."""

    def build(directory: UPath) -> tuple[str, dict]:
        outcome = scored_outcome(lambda: cell_features(store, cell, dataset_key, dataset_fingerprint, images, config),
                                 config)
        write_json(directory / CELL_FILE, outcome)
        return hashlib.sha256(stable_json(without_timings(outcome)).encode()).hexdigest(), outcome

    result = materialize_cached(
        store, asset=CELL_ASSET, partition=dataset_key, code_version=f"{CELL_CODE_VERSION}+features{FEATURES_CODE_VERSION}",
        config=asdict(config),
        inputs={"dataset": dataset_fingerprint, "checkpoint": cell.checkpoint_sha256, "card": cell.input_hash(),
                "architecture": cell.architecture or ""},
        build=build, log=None,  # one cell per model: no per-cell cache messages
    )
    return result.summary, result.cache_hit
