"""The real-resolution token benchmark's inputs: photo-like images and the baseline's batches (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.tokens_throughput import (
    FORMAT_CYCLE,
    MAX_SIDE,
    MIN_SIDE,
    SUFFIX,
    bare_encoder_rate,
    make_photo_folder,
    preprocessed_batches,
    source_photos,
)
from ml_core.images import load_rgb, scan_image_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_photo_like_images_have_the_promised_sizes_formats_and_content(tmp_path):
    assert len(source_photos()) >= 10  # scikit-image's offline photos and scikit-learn's two
    root = make_photo_folder(tmp_path / "a", 15, n_classes=3, workers=1)
    index = scan_image_folder(root, "train")
    assert index.classes == ["class00", "class01", "class02"] and index.images_per_class == [5, 5, 5]
    formats, sources = [], set()
    for path in sorted(p for files in index.files for p in files):
        i = int(path.stem)
        with Image.open(path) as image:
            formats.append(image.format)
            assert image.format == FORMAT_CYCLE[i % len(FORMAT_CYCLE)] and path.suffix == SUFFIX[image.format]
        rgb = load_rgb(path)
        assert rgb is not None and rgb.mode == "RGB"
        assert all(MIN_SIDE <= side <= MAX_SIDE for side in rgb.size), (path.name, rgb.size)
        pixels = np.asarray(rgb, dtype=np.float64)
        assert pixels.std() > 5  # a photo, not a flat fill
        sources.add(round(float(pixels.mean()), 1))
    assert sorted(set(formats)) == ["JPEG", "PNG", "WEBP"] and formats.count("JPEG") == 9
    assert len(sources) >= 10  # different crops, not one image repeated
    # same seed, same bytes, whether written by one process or two
    again = make_photo_folder(tmp_path / "b", 15, n_classes=3, workers=2)
    for files in index.files:
        for path in files:
            assert (again / path.relative_to(root)).read_bytes() == path.read_bytes()


def test_baseline_batches_follow_the_writer_plan_and_count_every_image(tmp_path):
    root = make_photo_folder(tmp_path / "ds", 7, n_classes=2, workers=1)
    batches = preprocessed_batches(root, lambda image: torch.tensor(image.size, dtype=torch.float32), 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    calls = []
    rate = bare_encoder_rate(lambda batch: calls.append(len(batch)), batches)
    assert rate > 0 and calls == [3, 3, 3, 1]  # one warm-up batch, then every image once
    # two batches in memory, cycled over the batch sizes the writer makes for 11 images
    first_two = preprocessed_batches(root, lambda image: torch.zeros(2), 3, limit=6)
    assert [len(b) for b in first_two] == [3, 3]
    calls.clear()
    bare_encoder_rate(lambda batch: calls.append(len(batch)), first_two, n_images=11)
    assert calls == [3, 3, 3, 3, 2]
