"""Where things are by default: every setting comes from an environment variable or a relative path.

Relative paths are relative to the working directory the pipeline runs in (the project root:
the Makefile and ``workspace.yaml`` both run from there). Run config overrides any of them.

| variable | default | what |
| --- | --- | --- |
| ``MODELREC_WORK_DIR`` | ``.work`` | the ignored working folder |
| ``MODELREC_ARTIFACT_ROOT`` | ``<work>/artifacts`` | artifact store root (a path or ``s3://``, ``memory://`` URL) |
| ``MODELREC_ZOO_DIR`` | ``<work>/fixture_world/zoo`` | model zoo folder |
| ``MODELREC_ZOO_MANIFEST`` | (none) | optional JSON listing architecture-named models |
| ``MODELREC_DATASETS_DIR`` | ``<work>/fixture_world/datasets`` | one ImageFolder per dataset |
| ``MODELREC_PERFORMANCE_TABLE`` | ``<work>/fixture_world/performance.json`` | JSON or CSV table |
| ``MODELREC_ENCODER_ARCH`` | the fixture's stand-in | open_clip architecture name |
| ``MODELREC_ENCODER_PRETRAINED`` | the fixture's stand-in file | open_clip tag or local weights file |
| ``MODELREC_ENCODER_CONFIG`` | the fixture's stand-in config | local open_clip model-config JSON |
| ``MODELREC_DEVICE`` | ``cpu`` | torch device for the heavy steps |
"""

from __future__ import annotations

import os
from pathlib import Path

FIXTURE_WORLD_DIR_NAME = "fixture_world"
STANDIN_ENCODER_ARCH = "modelrec-tiny-vit-standin"
STANDIN_ENCODER_SEED = 0


def work_dir() -> Path:
    return Path(os.environ.get("MODELREC_WORK_DIR", ".work"))


def fixture_world_dir() -> Path:
    return work_dir() / FIXTURE_WORLD_DIR_NAME


def setting(name: str, default: str | Path | None) -> str | None:
    """``os.environ[name]`` if set and non-empty, else ``default`` (as a string)."""
    value = os.environ.get(name, "")
    if value:
        return value
    return None if default is None else str(default)


def default_artifact_root() -> str:
    return setting("MODELREC_ARTIFACT_ROOT", work_dir() / "artifacts") or ""


def default_zoo_dir() -> str:
    return setting("MODELREC_ZOO_DIR", fixture_world_dir() / "zoo") or ""


def default_datasets_dir() -> str:
    return setting("MODELREC_DATASETS_DIR", fixture_world_dir() / "datasets") or ""


def default_performance_table() -> str:
    return setting("MODELREC_PERFORMANCE_TABLE", fixture_world_dir() / "performance.json") or ""


def default_encoder() -> dict[str, str | None]:
    """The image encoder settings; without MODELREC_ENCODER_ARCH, the fixture world's stand-in."""
    if os.environ.get("MODELREC_ENCODER_ARCH"):
        return {
            "architecture": os.environ["MODELREC_ENCODER_ARCH"],
            "pretrained": setting("MODELREC_ENCODER_PRETRAINED", None),
            "model_config_file": setting("MODELREC_ENCODER_CONFIG", None),
        }
    encoder_dir = fixture_world_dir() / "encoder"
    return {
        "architecture": STANDIN_ENCODER_ARCH,
        "pretrained": setting(
            "MODELREC_ENCODER_PRETRAINED", encoder_dir / f"{STANDIN_ENCODER_ARCH}-seed{STANDIN_ENCODER_SEED}.safetensors"
        ),
        "model_config_file": setting("MODELREC_ENCODER_CONFIG", encoder_dir / f"{STANDIN_ENCODER_ARCH}.json"),
    }
