"""Cheap, stable fingerprints of inputs, used in cache keys (no model is loaded, no image decoded)."""

from __future__ import annotations

import os
from pathlib import Path

from ml_core.image_encoder import ImageEncoderSpec
from ml_core.storage import hash_parts, sha256_file


def image_folder_fingerprint(dataset_dir: Path) -> str:
    """Hash of every file under ``dataset_dir``: relative path, size and modification time (ns).

    Adding, removing, replacing or touching an image changes it; reading image bytes is not
    needed, so checking a large dataset's cache costs one directory walk.
    """
    dataset_dir = Path(dataset_dir)
    entries = []
    for folder, dirs, files in os.walk(dataset_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:
                entries.append((path.relative_to(dataset_dir).as_posix(), -1, -1))
                continue
            entries.append((path.relative_to(dataset_dir).as_posix(), stat.st_size, stat.st_mtime_ns))
    return hash_parts("image_folder", entries)


def encoder_spec_fingerprint(spec: ImageEncoderSpec) -> str:
    """Hash of what determines an encoder's features: architecture, weights bytes, config bytes, precision."""
    weights: str | None = spec.pretrained
    if spec.pretrained and Path(spec.pretrained).is_file():
        weights = sha256_file(Path(spec.pretrained))
    config = sha256_file(Path(spec.model_config_file)) if spec.model_config_file else None
    parts = ["encoder", spec.kind, spec.architecture, weights, config, spec.precision, spec.normalize]
    if spec.image_size is not None:  # only set for EfficientNet-Lite0; open_clip keys stay as they were
        parts.append(spec.image_size)
    return hash_parts(*parts)
