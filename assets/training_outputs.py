"""Copy a trainer's local outputs (history JSON, loss plot) into an artifact directory."""

from __future__ import annotations

from pathlib import Path

from upath import UPath

TRAINING_FILES = ("history.json", "loss_curves.png")


def copy_training_outputs(local_dir: Path, directory: UPath) -> list[str]:
    """Copy the files a :class:`~ml_core.trainer.BaseTrainer` wrote; returns the names copied."""
    copied = []
    for name in TRAINING_FILES:
        source = local_dir / name
        if source.is_file():
            (directory / name).write_bytes(source.read_bytes())
            copied.append(name)
    return copied
