"""Dataset tokens: ImageFolder scanning, robust decoding, class-balanced rows, streaming zarr shards."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from PIL import Image
from upath import UPath

from ml_core.artifacts import zarr_store
from ml_core.images import (
    DatasetTokensError,
    ImageFolderError,
    TokenWriterConfig,
    load_image_encoder,
    load_rgb,
    plan_rows,
    read_dataset_tokens,
    scan_image_folder,
    write_dataset_tokens,
    write_random_open_clip_standin,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return load_image_encoder(write_random_open_clip_standin(tmp_path_factory.mktemp("enc"), seed=0))


def _write_image(path: Path, rng: np.random.Generator, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def make_folder(root: Path, counts: dict[str, int], split: str = "train", seed: int = 0) -> Path:
    """An ImageFolder dataset: ``counts[class]`` random 32x32 images, alternating PNG / JPEG."""
    rng = np.random.default_rng(seed)
    for class_name, count in counts.items():
        for i in range(count):
            _write_image(root / split / class_name / f"img{i:03d}.{'png' if i % 2 else 'jpg'}", rng)
    return root


def _encode_files(encoder, paths) -> np.ndarray:
    batch = torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    return encoder.encode(batch).numpy()


# --- image folder ----------------------------------------------------------------------------


def test_scan_picks_split_sorts_and_filters(tmp_path):
    root = make_folder(tmp_path / "ds", {"zebra": 2, "ant": 1}, split="val")
    make_folder(root, {"b": 1}, split="test")
    (root / "val" / "zebra" / "notes.txt").write_text("not an image")
    (root / "val" / "zebra" / ".DS_Store").write_bytes(b"\0")
    _write_image(root / "val" / "zebra" / "nested" / "UPPER.JPG", np.random.default_rng(1))
    index = scan_image_folder(root)
    assert index.split == "test" and index.splits == ["test", "val"]  # no train: first sorted
    index = scan_image_folder(root, "val")
    assert index.classes == ["ant", "zebra"]
    assert [p.name for p in index.files[1]] == ["img000.jpg", "img001.png", "UPPER.JPG"]
    assert index.n_images == 4 and index.n_ignored == 1
    make_folder(root, {"c": 1}, split="train")
    assert scan_image_folder(root).split == "train"
    with pytest.raises(ImageFolderError, match="no split 'nope'.*available"):
        scan_image_folder(root, "nope")
    with pytest.raises(ImageFolderError, match=str(tmp_path / "missing")):
        scan_image_folder(tmp_path / "missing")


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "P-transparent", "CMYK", "I;16", "F"])
def test_load_rgb_converts_every_mode_to_8bit_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(np.array([[0, 32768, 65535, 65535]], dtype=np.uint16))
    elif mode == "F":
        image = Image.fromarray(np.array([[0.0, 0.5, 1.0, 1.0]], dtype=np.float32))
    elif mode == "P-transparent":
        image = rgb.convert("P")
        image.info["transparency"] = 0
    else:
        image = rgb.convert(mode)
    suffix = {"CMYK": ".jpg", "F": ".tiff"}.get(mode, ".png")
    path = tmp_path / f"image{suffix}"
    image.save(path)
    loaded = load_rgb(path)
    assert loaded is not None and loaded.mode == "RGB" and loaded.size == image.size
    if mode in ("I;16", "F"):
        assert np.asarray(loaded)[0, :, 0].tolist() == [0, 128, 255, 255]


def test_load_rgb_returns_none_and_logs_for_bad_files(tmp_path, caplog):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    truncated = _write_image(tmp_path / "cut.png", np.random.default_rng(0), size=64)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with caplog.at_level(logging.WARNING):
        assert load_rgb(text) is None
        assert load_rgb(truncated) is None
        assert load_rgb(tmp_path / "absent.png") is None
    for path in (text, truncated):
        assert any(str(path) in record.getMessage() for record in caplog.records)


# --- writing ---------------------------------------------------------------------------------


def test_rows_are_class_balanced_and_padding_is_masked_zero(tmp_path, encoder):
    root = make_folder(tmp_path / "ds", {"a": 5, "b": 3, "c": 1})
    index = scan_image_folder(root)
    summary = write_dataset_tokens(index, encoder, UPath(tmp_path / "tok"), TokenWriterConfig(rows_per_shard=2))
    assert (summary.n_rows, summary.n_classes, summary.feature_dim) == (5, 3, 32)
    assert summary.n_valid == 9 and summary.n_skipped == 0 and summary.valid_per_class == [5, 3, 1]

    tokens = read_dataset_tokens(UPath(tmp_path / "tok"))
    assert tokens.features.shape == (5, 3, 32) and tokens.features.dtype == np.float32
    expected_valid = np.arange(5)[:, None] < np.array([5, 3, 1])[None, :]
    assert np.array_equal(tokens.valid, expected_valid)
    assert np.all(tokens.features[~tokens.valid] == 0)
    norms = np.linalg.norm(tokens.features[tokens.valid], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)  # float16 storage of unit vectors
    assert tokens.class_names == ["a", "b", "c"]
    attrs = tokens.attrs
    assert attrs["dataset"] == "ds" and attrs["split"] == "train"
    assert attrs["encoder"] == encoder.describe() and attrs["encoder_fingerprint"] == encoder.fingerprint()
    assert attrs["preprocessing"]["size"] == [32, 32]
    assert attrs["counts"]["valid_per_class"] == [5, 3, 1] and attrs["config"]["rows_per_shard"] == 2
    assert attrs["content_hash"] == summary.content_hash

    group = zarr.open_group(store=zarr_store(UPath(tmp_path / "tok")), mode="r")
    features = group["features"]
    assert features.dtype == np.float16
    assert features.shards == (2, 3, 32) and features.chunks == (1, 3, 32)
    assert group["valid"].dtype == bool
    assert group["class_ids"][:].tolist() == [0, 1, 2] and group["class_ids"].dtype == np.int32
    shard_files = [p for p in (tmp_path / "tok" / "features" / "c").rglob("*") if p.is_file()]
    assert len(shard_files) == summary.n_shards == 3  # ceil(5 rows / 2): one object per shard


def test_each_slot_holds_the_planned_image_and_class_means_skip_padding(tmp_path, encoder):
    root = make_folder(tmp_path / "ds", {"a": 5, "b": 3, "c": 1})
    index = scan_image_folder(root)
    config = TokenWriterConfig(dtype="float32", batch_size=4, rows_per_shard=2)
    write_dataset_tokens(index, encoder, UPath(tmp_path / "tok"), config)
    tokens = read_dataset_tokens(UPath(tmp_path / "tok"))
    columns = plan_rows(index, config)
    for c, files in enumerate(columns):
        assert sorted(files) == sorted(index.files[c])  # no cap: every image once, none repeated
        np.testing.assert_allclose(tokens.features[: len(files), c], _encode_files(encoder, files), atol=1e-5)

    direct_means = np.stack([_encode_files(encoder, files).mean(axis=0) for files in index.files])
    np.testing.assert_allclose(tokens.class_means(), direct_means, atol=1e-5)
    padded_means = tokens.features.mean(axis=0)  # what counting padding as data would give
    assert not np.allclose(padded_means[2], direct_means[2], atol=1e-2)
    assert tokens.present_classes == ["a", "b", "c"]


def test_max_rows_takes_a_seeded_random_subset(tmp_path, encoder):
    root = make_folder(tmp_path / "ds", {"a": 10, "b": 6, "c": 2})
    index = scan_image_folder(root)
    config = TokenWriterConfig(max_rows=4, dtype="float32")
    plan = plan_rows(index, config)
    assert [len(files) for files in plan] == [4, 4, 2]
    assert plan == plan_rows(index, config)
    assert plan[0] != plan_rows(index, TokenWriterConfig(max_rows=4, seed=1))[0]
    assert plan[0] != index.files[0][:4] and set(plan[0]) <= set(index.files[0])
    first = write_dataset_tokens(index, encoder, UPath(tmp_path / "t0"), config)
    again = write_dataset_tokens(index, encoder, UPath(tmp_path / "t1"), config)
    reseeded = TokenWriterConfig(max_rows=4, seed=1, dtype="float32")
    other = write_dataset_tokens(index, encoder, UPath(tmp_path / "t2"), reseeded)
    assert first.n_rows == 4 and first.valid_per_class == [4, 4, 2]
    assert first.content_hash == again.content_hash != other.content_hash
    tokens = read_dataset_tokens(UPath(tmp_path / "t0"))
    np.testing.assert_allclose(tokens.features[:, 0], _encode_files(encoder, plan[0]), atol=1e-5)


def test_streaming_buffer_does_not_grow_with_the_dataset(tmp_path, encoder):
    # 3 slots per row, 12 per shard, batches of 5: batches straddle shard borders (period 20 rows)
    config = TokenWriterConfig(rows_per_shard=4, batch_size=5, max_rows=None)
    batch_sizes: list[int] = []
    shards_on_disk: list[tuple[int, int]] = []  # (images encoded before this batch, shard files)

    class CountingEncoder:
        feature_dim, preprocess = encoder.feature_dim, encoder.preprocess
        describe, fingerprint = encoder.describe, encoder.fingerprint

        def encode(self, images):
            shard_dir = tmp_path / "tl" / "features" / "c"
            if shard_dir.exists():
                n_files = sum(1 for p in shard_dir.rglob("*") if p.is_file())
                shards_on_disk.append((sum(batch_sizes[n_small_batches:]), n_files))
            batch_sizes.append(images.shape[0])
            return encoder.encode(images)

    small = scan_image_folder(make_folder(tmp_path / "small", {"a": 20, "b": 20, "c": 20}))
    large = scan_image_folder(make_folder(tmp_path / "large", {"a": 200, "b": 200, "c": 200}))
    n_small_batches = 10**9
    s = write_dataset_tokens(small, CountingEncoder(), UPath(tmp_path / "ts"), config)
    n_small_batches = len(batch_sizes)
    big = write_dataset_tokens(large, CountingEncoder(), UPath(tmp_path / "tl"), config)
    assert (s.n_rows, big.n_rows) == (20, 200) and big.n_valid == 600 and big.n_shards == 50
    assert max(batch_sizes) == config.batch_size and len(batch_sizes) - n_small_batches == 120
    assert big.peak_buffered_rows == s.peak_buffered_rows == 2 * config.rows_per_shard
    # each shard is on disk as soon as its 12 slots are encoded, long before the end
    assert shards_on_disk and all(files == done // 12 for done, files in shards_on_disk)
    assert shards_on_disk[-1][1] == 49
    # decoding workers (processes by default, one batch ahead) compute the same tokens
    threaded_config = TokenWriterConfig(rows_per_shard=4, batch_size=5, max_rows=None, num_workers=2)
    threaded = write_dataset_tokens(large, encoder, UPath(tmp_path / "tl2"), threaded_config)
    assert threaded.content_hash == big.content_hash


def _with_bad_files(root: Path) -> Path:
    """Add a text file named .png and a truncated PNG to class a (two unreadable images)."""
    (root / "train" / "a" / "notes.png").write_text("not an image")
    truncated = _write_image(root / "train" / "a" / "cut.png", np.random.default_rng(5), size=64)
    truncated.write_bytes(truncated.read_bytes()[:200])
    return root


@pytest.mark.parametrize("decode_in", ["process", "process-pickled", "thread"])
def test_decoding_workers_give_identical_tokens_and_skips(tmp_path, encoder, caplog, monkeypatch, decode_in):
    """0 workers (this process) and 2 workers: same rows, order, features, skips, reasons and log lines.

    Worker processes hand images over in shared batch buffers, or pickled where there are none."""
    if decode_in == "process-pickled":
        import ml_core.images.tokens as tokens_module

        monkeypatch.setattr(tokens_module, "_shared_batch_buffers", lambda preprocess, batch_size: None)
        decode_in = "process"
    index = scan_image_folder(_with_bad_files(make_folder(tmp_path / "ds", {"a": 7, "b": 6, "c": 5})))
    written = {}
    for workers in (0, 2):
        config = TokenWriterConfig(batch_size=4, rows_per_shard=2, max_rows=None, dtype="float32",
                                   num_workers=workers, decode_in=decode_in)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ml_core.images.tokens"):
            summary = write_dataset_tokens(index, encoder, UPath(tmp_path / f"tok{workers}"), config)
        warnings = [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]
        written[workers] = summary, read_dataset_tokens(UPath(tmp_path / f"tok{workers}")), warnings
    (serial, serial_tokens, serial_log), (pooled, pooled_tokens, pooled_log) = written[0], written[2]
    assert np.array_equal(serial_tokens.features, pooled_tokens.features)  # bit-identical, not close
    assert np.array_equal(serial_tokens.valid, pooled_tokens.valid)
    assert pooled.content_hash == serial.content_hash and pooled.n_valid == serial.n_valid == 18
    assert pooled.skipped == serial.skipped and {s.path for s in pooled.skipped} == {
        "train/a/notes.png", "train/a/cut.png"}
    assert pooled_log == serial_log and len(pooled_log) == 2
    assert any("cannot identify image file" in s.reason for s in pooled.skipped)


def test_decoding_reads_at_most_one_batch_ahead(tmp_path, encoder):
    """Bounded prefetch: when batch k reaches the encoder, at most batches 0..k+1 have been taken."""
    from ml_core.images.tokens import _batched, _decoded_batches, _slots

    index = scan_image_folder(make_folder(tmp_path / "ds", {"a": 9, "b": 9}))
    columns = plan_rows(index, TokenWriterConfig(max_rows=None))
    taken = []

    def counted(batches):
        for batch in batches:
            taken.append(batch)
            yield batch

    config = TokenWriterConfig(batch_size=2, num_workers=2)
    stream = _decoded_batches(counted(_batched(_slots(columns, 9), 2)), encoder.preprocess, config, workers=2)
    seen = 0
    for k, (batch, decoded) in enumerate(stream):
        assert len(taken) <= k + 2 and batch == taken[k] and all(t is not None for t, _ in decoded)
        seen += len(batch)
    assert seen == 18 and len(taken) == 9


def test_automatic_worker_count_and_a_dead_worker_is_a_clear_error(tmp_path, encoder):
    from ml_core.images.tokens import decode_workers

    assert decode_workers(TokenWriterConfig(batch_size=64), 64) == 0  # one batch: nothing to overlap
    assert 1 <= decode_workers(TokenWriterConfig(batch_size=64), 65) <= 8
    assert decode_workers(TokenWriterConfig(num_workers=3), 10) == 3
    with pytest.raises(ValueError, match="decode_in"):
        TokenWriterConfig(decode_in="gpu")

    index = scan_image_folder(make_folder(tmp_path / "ds", {"a": 4, "b": 4}))

    parent = os.getpid()

    class CrashingEncoder:
        """Its preprocessing kills a worker process: as a decoder crash on a malicious file would."""

        feature_dim, encode = encoder.feature_dim, encoder.encode
        describe, fingerprint = encoder.describe, encoder.fingerprint

        @staticmethod
        def preprocess(image):
            if os.getpid() != parent:
                os._exit(3)
            return encoder.preprocess(image)

    config = TokenWriterConfig(batch_size=2, num_workers=1, decode_in="process")
    with pytest.raises(DatasetTokensError, match=r"decoding worker process died.*num_workers=0"):
        write_dataset_tokens(index, CrashingEncoder(), UPath(tmp_path / "tok"), config)


def test_unreadable_files_are_skipped_listed_and_masked(tmp_path, encoder):
    root = make_folder(tmp_path / "ds", {"a": 4, "b": 3})
    (root / "train" / "a" / "notes.png").write_text("not an image")
    truncated = _write_image(root / "train" / "a" / "cut.png", np.random.default_rng(5), size=64)
    truncated.write_bytes(truncated.read_bytes()[:200])
    (root / "train" / "b" / "readme.txt").write_text("ignored: not an image extension")
    index = scan_image_folder(root)
    assert index.images_per_class == [6, 3] and index.n_ignored == 1
    summary = write_dataset_tokens(index, encoder, UPath(tmp_path / "tok"), TokenWriterConfig())
    bad = {"train/a/notes.png", "train/a/cut.png"}
    assert summary.n_skipped == 2 and {s.path for s in summary.skipped} == bad
    assert all(s.reason for s in summary.skipped)
    tokens = read_dataset_tokens(UPath(tmp_path / "tok"))
    assert {s["path"] for s in tokens.attrs["skipped"]} == bad and tokens.attrs["skipped_total"] == 2
    assert summary.valid_per_class == [4, 3] and tokens.valid.sum(axis=0).tolist() == [4, 3]
    column_a = plan_rows(index, TokenWriterConfig())[0]
    for row, path in enumerate(column_a):
        is_bad = path.name in ("notes.png", "cut.png")
        assert tokens.valid[row, 0] == (not is_bad)
        if is_bad:
            assert np.all(tokens.features[row, 0] == 0)


def test_too_little_left_raises_with_folder_and_counts(tmp_path, encoder):
    root = make_folder(tmp_path / "ds", {"a": 2})
    for i in range(3):
        (root / "train" / "b" / f"bad{i}.png").parent.mkdir(parents=True, exist_ok=True)
        (root / "train" / "b" / f"bad{i}.png").write_bytes(b"garbage")
    with pytest.raises(DatasetTokensError, match=r"too little is left.*2 of 5 images.*1 classes") as caught:
        write_dataset_tokens(scan_image_folder(root), encoder, UPath(tmp_path / "t1"), TokenWriterConfig())
    assert str(root) in str(caught.value)

    make_folder(root, {"b": 2}, seed=1)  # now b has 2 good + 3 bad: 2 classes, but 4/7 < 0.6
    strict = TokenWriterConfig(min_valid_fraction=0.6)
    with pytest.raises(DatasetTokensError, match="4 of 7 images"):
        write_dataset_tokens(scan_image_folder(root), encoder, UPath(tmp_path / "t2"), strict)
    assert write_dataset_tokens(scan_image_folder(root), encoder, UPath(tmp_path / "t3")).n_valid == 4

    single = make_folder(tmp_path / "single", {"only": 3})
    with pytest.raises(DatasetTokensError, match="1 of 1 classes"):
        write_dataset_tokens(scan_image_folder(single), encoder, UPath(tmp_path / "t4"))
    assert not (tmp_path / "t4").exists()  # refused before anything was written


def test_content_hash_is_deterministic_and_tracks_the_pixels(tmp_path, encoder):
    root = make_folder(tmp_path / "ds", {"a": 3, "b": 2})
    index = scan_image_folder(root)
    first = write_dataset_tokens(index, encoder, UPath(tmp_path / "t1"))
    second = write_dataset_tokens(index, encoder, UPath(tmp_path / "t2"))
    assert first.content_hash == second.content_hash
    a, b = read_dataset_tokens(UPath(tmp_path / "t1")), read_dataset_tokens(UPath(tmp_path / "t2"))
    assert np.array_equal(a.features, b.features)
    _write_image(index.files[1][0], np.random.default_rng(99))
    changed = write_dataset_tokens(index, encoder, UPath(tmp_path / "t3"))
    assert changed.content_hash != first.content_hash


def test_token_set_flattens_rows_with_the_valid_mask(tmp_path, encoder):
    root = make_folder(tmp_path / "ds", {"a": 5, "b": 3, "c": 1})
    write_dataset_tokens(scan_image_folder(root), encoder, UPath(tmp_path / "tok"))
    tokens = read_dataset_tokens(UPath(tmp_path / "tok"))
    flat, mask = tokens.as_token_set()
    assert flat.shape == (15, 32) and flat.dtype == np.float32
    assert np.array_equal(mask, tokens.valid.reshape(-1)) and np.all(flat[~mask] == 0)
    first_two, first_mask = tokens.as_token_set(max_rows=2)
    assert np.array_equal(first_two, flat[:6]) and np.array_equal(first_mask, mask[:6])
    picked, picked_mask = tokens.as_token_set(max_rows=2, rng=3)
    again, _ = tokens.as_token_set(max_rows=2, rng=np.random.default_rng(3))
    assert picked.shape == (6, 32) and np.array_equal(picked, again)
    rows = np.sort(np.random.default_rng(3).choice(5, size=2, replace=False))
    assert np.array_equal(picked, tokens.features[rows].reshape(-1, 32))
    assert np.array_equal(picked_mask, tokens.valid[rows].reshape(-1))


def test_tokens_round_trip_through_an_fsspec_store(tmp_path, encoder):
    root = make_folder(tmp_path / "ds", {"a": 2, "b": 2})
    target = UPath("memory://dataset-tokens-test/ds")
    summary = write_dataset_tokens(scan_image_folder(root), encoder, target)
    tokens = read_dataset_tokens(target)
    assert tokens.features.shape == (2, 2, 32) and tokens.attrs["content_hash"] == summary.content_hash
    local = write_dataset_tokens(scan_image_folder(root), encoder, UPath(tmp_path / "tok"))
    assert local.content_hash == summary.content_hash


def test_read_rejects_a_folder_that_is_not_a_token_group(tmp_path):
    with pytest.raises(DatasetTokensError, match="not a dataset-token group"):
        read_dataset_tokens(UPath(tmp_path / "absent"))
