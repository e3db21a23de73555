"""Image folders from anywhere: every bad file is skipped and counted, never a crash.

Extends tests/test_dataset_tokens.py (text file named .png, truncated PNG, the common modes, too
few images left): here more formats and modes, broken files of every kind, decompression bombs
and extreme aspect ratios refused from the header, symlink cycles, unreadable files and folders,
empty classes, one class, one split, and the same through the ``dataset_tokens`` asset.
"""

from __future__ import annotations

import builtins
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance
from PIL import Image
from upath import UPath

from assets.dataset_tokens import dataset_tokens
from ml_core.images import (
    DatasetTokensError,
    ImageFolderError,
    TokenWriterConfig,
    load_image_encoder,
    load_rgb_with_reason,
    read_dataset_tokens,
    scan_image_folder,
    write_dataset_tokens,
    write_random_open_clip_standin,
)
from resources.compute import ComputeDevice
from resources.dataset_catalog import DatasetCatalog
from resources.image_encoder import ImageEncoderResource
from tests.test_robustness_helpers import (
    DATASETS,
    failure_text,
    image_folder,
    materialize_partition,
    metadata_of,
    store_resources,
    temporaries,
    write_image,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def encoder_spec(tmp_path_factory):
    return write_random_open_clip_standin(tmp_path_factory.mktemp("encoder"), seed=0)


@pytest.fixture(scope="module")
def encoder(encoder_spec):
    return load_image_encoder(encoder_spec)


def _png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG file from raw scanlines (each starting with its filter byte)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _blank_bilevel_png(side: int) -> bytes:
    """A valid, tiny (kilobytes) black 1-bit PNG of side x side pixels: a decompression bomb."""
    row = b"\x00" * (1 + -(-side // 8))
    return _png(side, side, 1, 0, row * side)


# --- formats and modes that must decode -----------------------------------------------------------


def _rgb(size=(12, 9)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _make_good(path: Path, kind: str) -> Path:
    rgb = _rgb()
    if kind == "bilevel_1bit":
        rgb.convert("1").save(path.with_suffix(".png"))
    elif kind == "int32_tiff":
        Image.fromarray(np.arange(108, dtype=np.int32).reshape(9, 12) * 1000).save(path.with_suffix(".tif"))
    elif kind == "lab_tiff":
        Image.new("LAB", (12, 9), (50, 10, 20)).save(path.with_suffix(".tif"))
    elif kind == "ycbcr_jpeg":
        rgb.convert("YCbCr").save(path.with_suffix(".jpg"))
    elif kind == "rgb48_png":
        pixels = np.full((9, 12, 3), 40000, dtype=">u2")
        path.with_suffix(".png").write_bytes(_png(12, 9, 16, 2, b"".join(b"\x00" + r.tobytes() for r in pixels)))
    elif kind == "la16_png":
        pixels = np.full((9, 12, 2), 65535, dtype=">u2")
        path.with_suffix(".png").write_bytes(_png(12, 9, 16, 4, b"".join(b"\x00" + r.tobytes() for r in pixels)))
    elif kind == "animated_gif":
        rgb.save(path.with_suffix(".gif"), save_all=True, append_images=[_rgb().rotate(90)], duration=100)
    elif kind == "multipage_tiff":
        rgb.save(path.with_suffix(".tiff"), save_all=True, append_images=[rgb.convert("L")])
    elif kind == "webp":
        rgb.save(path.with_suffix(".webp"))
    elif kind == "bmp":
        rgb.save(path.with_suffix(".bmp"))
    elif kind == "tiny_1x1":
        _rgb((1, 1)).save(path.with_suffix(".png"))
    elif kind == "unicode_name":
        rgb.save(path.with_name("ïmägé 图像 ✓.png"))
    elif kind == "upper_case_suffix":
        rgb.save(path.with_suffix(".JPEG"), format="JPEG")
    [made] = list(path.parent.iterdir())
    return made


GOOD_KINDS = ["bilevel_1bit", "int32_tiff", "lab_tiff", "ycbcr_jpeg", "rgb48_png", "la16_png", "animated_gif",
              "multipage_tiff", "webp", "bmp", "tiny_1x1", "unicode_name", "upper_case_suffix"]


@pytest.mark.parametrize("kind", GOOD_KINDS)
def test_unusual_but_valid_images_decode_to_8bit_rgb(tmp_path, kind):
    path = _make_good(tmp_path / "image", kind)
    image, reason = load_rgb_with_reason(path)
    assert reason is None and image is not None and image.mode == "RGB"
    assert image.size == ((1, 1) if kind == "tiny_1x1" else (12, 9))
    if kind == "rgb48_png":
        assert np.asarray(image)[0, 0].tolist() == [156, 156, 156]  # 40000 / 257, not wrapped bytes


# --- files that must be skipped with a reason -------------------------------------------------------


def _make_bad(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good_jpeg = write_image(folder / "src.jpg", size=64, quality=90).read_bytes()
    good_png = write_image(folder / "src.png", size=64).read_bytes()
    good_gif = (_rgb().save(folder / "src.gif") or (folder / "src.gif")).read_bytes()
    for src in ("src.jpg", "src.png", "src.gif"):
        (folder / src).unlink()
    png_bad_crc = bytearray(good_png)
    png_bad_crc[40] ^= 0xFF  # inside IDAT: the CRC no longer matches
    files = {
        "zero_bytes.jpg": b"",
        "html_page.jpg": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "text_notes.png": b"just some notes",
        "pdf_renamed.png": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF",
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "cut_in_header.jpg": good_jpeg[:60],
        "truncated.png": good_png[:150],
        "bad_crc.png": bytes(png_bad_crc),
        "truncated.gif": good_gif[:40],
        "random_bytes.webp": np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes(),
        "bomb_100M_pixels.png": _blank_bilevel_png(10_000),
        "bomb_196M_pixels.png": _blank_bilevel_png(14_000),
        "strip_1x5000.png": _png(5000, 1, 8, 0, b"\x00" + b"\x80" * 5000),
    }
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    (folder / "dangling_link.png").symlink_to(folder / "does_not_exist.png")
    paths["dangling_link.png"] = folder / "dangling_link.png"
    return paths


def test_every_broken_file_gives_none_and_a_reason_never_an_exception(tmp_path):
    bad = _make_bad(tmp_path / "bad")
    reasons = {}
    for name, path in bad.items():
        image, reason = load_rgb_with_reason(path)
        assert image is None and reason, name
        reasons[name] = reason
    assert len(bad) == 14
    assert "too large" in reasons["bomb_100M_pixels.png"]  # PIL only warns here: our guard refuses it
    assert "pixels" in reasons["bomb_196M_pixels.png"]  # PIL's own DecompressionBombError
    assert "aspect ratio" in reasons["strip_1x5000.png"]
    assert "truncated" in reasons["truncated.jpg"]


def test_a_huge_legitimate_image_is_encoded(tmp_path, encoder):
    """8000 x 8000 (64 M pixels) is under the bomb limit: decoded once, resized, encoded."""
    root = image_folder(tmp_path / "ds", {"a": 2, "b": 2})
    big = Image.new("L", (8000, 8000), 90)
    big.paste(255, (0, 0, 4000, 4000))
    big.save(root / "train" / "a" / "huge.png", compress_level=1)
    del big
    summary = write_dataset_tokens(scan_image_folder(root), encoder, UPath(tmp_path / "tok"), TokenWriterConfig())
    assert summary.n_skipped == 0 and summary.valid_per_class == [3, 2]


def test_a_dataset_full_of_bad_files_skips_and_lists_each(tmp_path, encoder):
    root = image_folder(tmp_path / "ds", {"good_a": 4, "good_b": 3, "empty": 0})
    bad = _make_bad(root / "train" / "only_bad")
    index = scan_image_folder(root)
    assert index.empty_classes == ["empty"]
    summary = write_dataset_tokens(index, encoder, UPath(tmp_path / "tok"), TokenWriterConfig(min_valid_fraction=0.3))
    assert {s.path for s in summary.skipped} == {f"train/only_bad/{name}" for name in bad}
    assert summary.n_skipped == len(bad) and all(s.reason for s in summary.skipped)
    assert summary.valid_per_class == [0, 4, 3, 0]  # classes: empty, good_a, good_b, only_bad
    tokens = read_dataset_tokens(UPath(tmp_path / "tok"))
    assert tokens.attrs["counts"]["empty_classes"] == ["empty"]
    assert tokens.attrs["skipped_total"] == len(bad)
    assert tokens.present_classes == ["good_a", "good_b"]
    # the default policy (at least half the images must decode) refuses this dataset, clearly
    with pytest.raises(DatasetTokensError, match=r"too little is left.*7 of 21 images"):
        write_dataset_tokens(index, encoder, UPath(tmp_path / "tok2"))


def test_symlink_cycles_and_duplicate_links_are_read_once(tmp_path):
    root = image_folder(tmp_path / "ds", {"a": 3, "b": 2})
    (root / "train" / "a" / "loop").symlink_to(root / "train" / "a", target_is_directory=True)
    (root / "train" / "b" / "again").symlink_to(root / "train" / "b", target_is_directory=True)
    index = scan_image_folder(root)
    assert index.images_per_class == [3, 2]


def _deny(monkeypatch, denied: set[str]) -> None:
    """Simulate chmod 000 for a root user: opening or listing these paths raises PermissionError."""
    real_open, real_scandir = builtins.open, os.scandir

    def guarded_open(file, *args, **kwargs):
        if str(file) in denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def guarded_scandir(path="."):
        if str(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "scandir", guarded_scandir)


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_unreadable_files_and_folders_are_skipped_and_reported(tmp_path, encoder, monkeypatch, how):
    root = image_folder(tmp_path / "ds", {"a": 4, "b": 3, "c": 2})
    locked_file = root / "train" / "a" / "img000.png"
    locked_dir = root / "train" / "c"
    if how == "chmod":
        if RUNNING_AS_ROOT:
            pytest.skip("running as root: chmod 000 does not block reads (the 'simulated' case covers it)")
        locked_file.chmod(0)
        locked_dir.chmod(0)
    else:
        _deny(monkeypatch, {str(locked_file), str(locked_dir)})
    try:
        index = scan_image_folder(root)
        summary = write_dataset_tokens(index, encoder, UPath(tmp_path / "tok"), TokenWriterConfig())
    finally:
        if how == "chmod":
            locked_file.chmod(0o644)
            locked_dir.chmod(0o755)
    reasons = {s.path: s.reason for s in summary.skipped}
    assert "PermissionError" in reasons["train/a/img000.png"]
    assert "folder unreadable" in reasons["train/c/"]
    assert summary.valid_per_class == [3, 3, 0]


def test_an_unreadable_split_folder_is_a_clear_error(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "ds", {"a": 1})
    real_iterdir = Path.iterdir

    def guarded(self):
        if self == root / "train":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", guarded)
    with pytest.raises(ImageFolderError, match=r"ds/train: cannot list the folder \(PermissionError"):
        scan_image_folder(root, "train")


def test_one_split_under_another_name_is_used_two_are_not_guessed(tmp_path):
    root = image_folder(tmp_path / "ds", {"a": 1, "b": 1}, split="test")
    assert scan_image_folder(root, "train").split == "test"
    image_folder(root, {"a": 1}, split="val")
    with pytest.raises(ImageFolderError, match=r"no split 'train'; available splits: \['test', 'val'\]"):
        scan_image_folder(root, "train")


# --- through the dataset_tokens asset -------------------------------------------------------------------


def test_dataset_tokens_asset_reports_skips_and_fails_clearly(tmp_path, encoder_spec):
    datasets = tmp_path / "datasets"
    mixed = image_folder(datasets / "mixed", {"a": 4, "b": 4})
    (mixed / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (mixed / "train" / "b" / "bomb.png").write_bytes(_blank_bilevel_png(10_000))
    image_folder(datasets / "one_class", {"only": 3})
    image_folder(datasets / "only_test_split", {"x": 2, "y": 2}, split="test")
    artifacts = tmp_path / "artifacts"
    resources = store_resources(artifacts) | {
        "catalog": DatasetCatalog(root=str(datasets)),
        "image_encoder": ImageEncoderResource(
            architecture=encoder_spec.architecture,
            pretrained=encoder_spec.pretrained,
            model_config_file=encoder_spec.model_config_file,
            **{k: getattr(encoder_spec, k, None) for k in ("kind", "image_size") if k in ImageEncoderResource.model_fields},
        ),
        "compute": ComputeDevice(device="cpu"),
    }
    instance = DagsterInstance.ephemeral()

    result = materialize_partition(dataset_tokens, "mixed", resources, instance, dimension=DATASETS)
    assert result.success, failure_text(result)
    meta = metadata_of(result)
    assert meta["n_skipped_images"] == 2 and meta["n_valid_images"] == 8
    assert "train/a/broken.jpg" in meta["skipped_examples"] and "train/b/bomb.png: image too large" in meta["skipped_examples"]

    result = materialize_partition(dataset_tokens, "only_test_split", resources, instance, dimension=DATASETS)
    assert result.success, failure_text(result)
    assert metadata_of(result)["split"] == "test"

    result = materialize_partition(dataset_tokens, "one_class", resources, instance, dimension=DATASETS)
    assert not result.success
    text = failure_text(result)
    assert str(datasets / "one_class") in text and "need at least 2" in text
    assert temporaries(artifacts) == []
