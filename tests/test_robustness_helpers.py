"""Shared helpers of the robustness tests (``tests/test_robustness_*.py``); no tests here.

Assets are materialized one at a time with ``dagster.materialize`` on an ephemeral instance,
with resources built here (not through ``pipelines``), so each test sets up only what it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from dagster import DagsterInstance, ExecuteInProcessResult, materialize
from dagster._core.storage.defs_state.base import set_defs_state_storage
from PIL import Image

from assets.shared.artifacts import ArtifactRefIOManager
from assets.shared.partitions import DATASETS, MODELS
from resources.artifact_store import ArtifactStore
from resources.model_zoo import ModelZoo

QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def store_resources(root: Path | str) -> dict[str, Any]:
    store = ArtifactStore(root=str(root))
    return {"store": store, "io_manager": ArtifactRefIOManager(store=store)}


def zoo_resources(zoo_dir: Path, artifact_root: Path | str, manifest: Path | None = None) -> dict[str, Any]:
    return store_resources(artifact_root) | {
        "zoo": ModelZoo(root=str(zoo_dir), manifest=str(manifest) if manifest else None)
    }


def materialize_partition(
    asset: Any,
    partition: str | None,
    resources: dict[str, Any],
    instance: DagsterInstance,
    *,
    dimension: str = MODELS,
    run_config: dict[str, Any] | None = None,
    upstream: tuple[Any, ...] = (),
) -> ExecuteInProcessResult:
    """Materialize one partition of one asset; failures come back in the result (not raised).

    ``upstream``: specs (``AssetSpec``) of inputs that are not materialized here (read through
    the IO manager as they are in the store).
    """
    if partition is not None and partition not in instance.get_dynamic_partitions(dimension):
        instance.add_dynamic_partitions(dimension, [partition])
    # Dagster looks up "the current" definitions-state storage in a context variable that an
    # instance entered elsewhere (another test module's fixture) may have left pointing at a
    # deleted temporary instance: make this run's instance the current one.
    with set_defs_state_storage(instance.defs_state_storage):
        return materialize(
            [asset, *upstream],
            selection=[asset.key],
            partition_key=partition,
            instance=instance,
            resources=resources,
            run_config={**QUIET, **(run_config or {})},
            raise_on_error=False,
        )


def failure_text(result: ExecuteInProcessResult) -> str:
    """Every step failure's message, with the chain of causes (what the Dagster UI shows)."""
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.message)
                error = error.cause
    return "\n".join(parts)


def metadata_of(result: ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata values of the (single) materialization in ``result``."""
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def temporaries(root: Path) -> list[Path]:
    """Leftover staging directories / files (``.<name>.tmp-<hex>``) anywhere under ``root``."""
    return sorted(p for p in Path(root).rglob("*") if ".tmp-" in p.name)


def write_image(path: Path, size: int = 24, seed: int = 0, **save: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **save)
    return path


def image_folder(root: Path, counts: dict[str, int], split: str = "train", seed: int = 0) -> Path:
    """``counts[class]`` small random PNG images per class under ``root/split/class``."""
    for c, (class_name, count) in enumerate(counts.items()):
        if count == 0:
            (root / split / class_name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_image(root / split / class_name / f"img{i:03d}.png", seed=seed * 1000 + c * 100 + i)
    return root


__all__ = [
    "DATASETS",
    "MODELS",
    "QUIET",
    "all_files",
    "failure_text",
    "image_folder",
    "materialize_partition",
    "metadata_of",
    "store_resources",
    "temporaries",
    "write_image",
    "zoo_resources",
]
