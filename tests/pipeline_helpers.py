"""Shared set-up for the pipeline tests: resources pointing at a built-in world, fast run config."""

import shutil
from pathlib import Path
from typing import Any

from pipelines.definitions import world_env, world_resources
from resources.artifact_store import ArtifactStore
from worlds import World, build_world

__all__ = ["FAST_RUN_CONFIG", "copy_world", "resources_for", "world_env"]

# Small but real settings: the same code paths, fewer epochs.
FAST_RUN_CONFIG: dict[str, Any] = {
    "ops": {
        "autoencoder": {"config": {"tokens": {"model": {"d_model": 32, "n_heads": 2, "ff_dim": 64, "code_dim": 16},
                                              "trainer": {"epochs": 2}, "steps_per_epoch": 6, "val_steps": 2,
                                              "max_tokens_per_model": 1024}}},
        "embedding_probes": {"config": {"n_folds": 2}},
        "ranking_transformer": {"config": {"training": {"model": {"d_model": 32, "dim_feedforward": 64},
                                                        "trainer": {"epochs": 4}}}},
        "ranker_evaluation": {"config": {"base": {"model": {"d_model": 16, "dim_feedforward": 32},
                                                  "trainer": {"epochs": 2}},
                                         "models_folds": 2, "val_families": 1,
                                         # one setting per budget method: the grid's code path, not its size
                                         "budget_strengths": [1.0], "budget_blends": [0.5],
                                         "budget_noises": [0.05], "budget_shrinkages": [0.2]}},
    }
}


def copy_world(world: World, root: Path) -> World:
    """A private copy of a shared session world under ``root``, for a module that adds or removes files
    (the copy is a cache hit of the same build)."""
    shutil.copytree(world.root, root)
    return build_world(root, scale=world.scale, seed=world.manifest().seed)


def resources_for(world: World, artifact_root: Path) -> dict[str, Any]:
    return world_resources(world, ArtifactStore(root=str(artifact_root)))
