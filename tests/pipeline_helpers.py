"""Shared set-up for the pipeline tests: a small fixture world and resources pointing at it."""

from pathlib import Path
from typing import Any

from ml_core.fixture_world import FixtureWorld, build_fixture_world
from pipelines.definitions import world_resources
from resources.artifact_store import ArtifactStore

# Small but real settings: the same code paths, fewer epochs.
FAST_RUN_CONFIG: dict[str, Any] = {
    "ops": {
        "autoencoder": {"config": {"epochs": 2, "max_chunks_per_model": 64, "hidden_dim": 256, "code_dim": 64}},
        "ranking_transformer": {"config": {"epochs": 4, "d_model": 32, "dim_feedforward": 64}},
        "ranker_evaluation": {"config": {"epochs": 2, "d_model": 16, "models_folds": 2, "val_families": 1}},
    }
}


def small_world(root: Path) -> FixtureWorld:
    return build_fixture_world(root, seed=0, n_images_per_class=6)


def resources_for(world: FixtureWorld, artifact_root: Path) -> dict[str, Any]:
    return world_resources(world, ArtifactStore(root=str(artifact_root)))


def world_env(world: FixtureWorld, artifact_root: Path) -> dict[str, str]:
    """The same configuration as environment variables (for the Dagster CLI)."""
    spec = world.encoder_spec
    return {
        "MODELREC_ARTIFACT_ROOT": str(artifact_root),
        "MODELREC_ZOO_DIR": str(world.zoo_dir),
        "MODELREC_DATASETS_DIR": str(world.datasets_dir),
        "MODELREC_PERFORMANCE_TABLE": str(world.table_path),
        "MODELREC_ENCODER_ARCH": spec.architecture,
        "MODELREC_ENCODER_PRETRAINED": str(spec.pretrained),
        "MODELREC_ENCODER_CONFIG": str(spec.model_config_file),
    }
