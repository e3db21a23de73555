"""A zoo model's features of a dataset, cached as a zarr artifact and reused by every score: the format's
round trip, no second forward pass for another scoring config or scorer, honest keys (a changed dataset or
checkpoint makes new features, the rest untouched), a failed or killed write that no read accepts, and the
S3 store. Stand-in data: a fake forward pass on generated images, and the REDUCED demo world's models."""

import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

import assets.shared.transferability_cells as cells_module
import ml_core.ground_truth.features as features_module
from ml_core.artifacts import MANIFEST_NAME, build_cached
from ml_core.ground_truth import (
    FEATURES_ASSET,
    FeaturesError,
    LabelledImages,
    TransferabilityConfig,
    ZooCell,
    cached_model_features,
    published_model_features,
    read_model_features,
    scoring_selection,
    transferability_outcome,
    write_model_features,
    zoo_cells,
)
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from tests.test_s3_store import BUCKET as S3_BUCKET
from tests.test_s3_store import s3  # noqa: F401 - the moto S3 server fixture, shared

SELECTION = scoring_selection("train", 1000)


def _images(n=23, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8) for _ in range(n)]
    labels = np.arange(n) % classes
    ids = [f"train/c{label}/img{i:03d}.png" for i, label in enumerate(labels)]
    return LabelledImages(images, labels.astype(np.int64), [f"c{c}" for c in range(classes)], ids,
                          (("train/c0/broken.png", "cannot identify image file"),))


def _fake_forward(calls=None, fail_at_batch=None):
    """Features = a fixed projection of each image's pixels (float32, the same whatever the batch); counts calls."""
    projection = np.random.default_rng(1).normal(size=(8 * 8 * 3, 5)).astype(np.float32)

    def forward(images):
        if calls is not None:
            calls.append(len(images))
        if fail_at_batch is not None and calls is not None and len(calls) == fail_at_batch:
            raise RuntimeError("killed mid-write")
        return np.stack([(img.reshape(-1).astype(np.float32) / 255) @ projection for img in images])  # per image

    return forward


def _fake_cell(key="fake"):
    return ZooCell(key, key, Path(f"/nowhere/{key}.safetensors"), None, None, "stand-in model", "ab" * 32)


def test_features_round_trip_streams_batches_and_reads_lazily(tmp_path):
    data, calls = _images(), []
    store = ArtifactStore(root=str(tmp_path / "store"))

    def build(directory):
        summary = write_model_features(directory, data, _fake_forward(calls), batch_size=10, attrs={"model": {"key": "m"}})
        return summary["content_hash"], summary

    key, manifest, _ = build_cached(store, asset=FEATURES_ASSET, partition="d", code_version="1", config={}, inputs={},
                                    build=build)
    assert calls == [10, 10, 3]  # written a batch at a time
    features = read_model_features(store.artifact_dir(FEATURES_ASSET, "d", key))
    expected = _fake_forward()(data.images)
    assert features.load().dtype == np.float64 and np.array_equal(features.load(), expected.astype(np.float64))
    assert features.n_images == 23 and features.feature_dim == 5 and features.image_ids == data.ids
    np.testing.assert_array_equal(features.labels, data.labels)
    rows = features.rows_of([data.ids[17], data.ids[2]])
    assert rows.tolist() == [17, 2] and np.array_equal(features.load(rows), expected[[17, 2]].astype(np.float64))
    assert features.rows_of(["train/c9/unknown.png"]) is None
    attrs = features.attrs
    assert attrs["counts"] == {"n_images": 23, "feature_dim": 5, "n_classes": 3, "n_skipped": 1}
    assert attrs["skipped"] == [{"path": "train/c0/broken.png", "reason": "cannot identify image file"}]
    assert attrs["model"] == {"key": "m"} and attrs["class_names"] == ["c0", "c1", "c2"]
    assert manifest["content_hash"] == attrs["content_hash"]
    # the same features written again (another batch size) have the same content hash
    again = write_model_features(tmp_path / "again", data, _fake_forward(), batch_size=7)
    assert again["content_hash"] == attrs["content_hash"]


def test_a_failed_or_killed_write_leaves_nothing_a_read_accepts_and_the_next_run_rebuilds(tmp_path, monkeypatch):
    store = ArtifactStore(root=str(tmp_path / "store"))
    data, cell, calls = _images(n=600), _fake_cell(), []
    monkeypatch.setattr(features_module, "zoo_model_runner", lambda c: _fake_forward(calls, fail_at_batch=2))
    with pytest.raises(RuntimeError, match="killed mid-write"):
        cached_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION, images=lambda: data)
    assert published_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION) is None
    assert not list((store.root_path / FEATURES_ASSET / "d").iterdir())  # the staging folder is gone
    # a hard kill (no clean-up) leaves an unpublished group at the final path: no read accepts it ...
    key = features_module.features_cache_key(cell, "fp", SELECTION)
    final = store.artifact_dir(FEATURES_ASSET, "d", key)
    write_model_features(final, data, _fake_forward())  # complete data, but never published: no manifest
    with pytest.raises(FeaturesError, match="no manifest"):
        read_model_features(final)
    assert published_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION) is None
    # ... and the next run rebuilds it (one forward pass per batch) and publishes it
    calls.clear()
    monkeypatch.setattr(features_module, "zoo_model_runner", lambda c: _fake_forward(calls))
    features, hit = cached_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION,
                                          images=lambda: data)
    assert not hit and calls == [256, 256, 88] and (final / MANIFEST_NAME).exists()
    assert np.array_equal(features.load(), _fake_forward()(data.images).astype(np.float64))
    _, hit = cached_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION,
                                   images=lambda: pytest.fail("a hit decodes no image"))
    assert hit and len(calls) == 3


# ----------------------------------------------------------------------------- the cells, on real models


@pytest.fixture
def scoring(reduced_world, tmp_path, monkeypatch, one_torch_thread):
    """The reduced world's zoo scored on its first two datasets through the cell cache, counting forward passes."""
    zoo_dir = tmp_path / "zoo"
    shutil.copytree(reduced_world.zoo_dir, zoo_dir)
    datasets_dir = tmp_path / "datasets"
    catalog = DatasetCatalog(root=str(reduced_world.datasets_dir))
    entries = catalog.entries()[:2]
    for entry in entries:
        shutil.copytree(entry.path, datasets_dir / Path(entry.path).name)
    store = ArtifactStore(root=str(tmp_path / "store"))
    passes = []
    real = features_module.zoo_model_runner

    def counted(cell):
        run = real(cell)
        return lambda images: passes.append((cell.key, len(images))) or run(images)

    monkeypatch.setattr(features_module, "zoo_model_runner", counted)

    def score(config):
        cells = [c for c in zoo_cells(ModelZoo(root=str(zoo_dir)).entries(), store.fingerprints.file_sha256)
                 if c.card is not None]
        out = {}
        for entry in DatasetCatalog(root=str(datasets_dir)).entries():
            fingerprint = store.fingerprints.folder(entry.path)
            images = cells_module.dataset_images(entry.path, config)
            for cell in cells:
                out[entry.key, cell.key] = cells_module.cached_cell(store, cell, entry.key, fingerprint, images, config)
        return out

    return {"score": score, "passes": passes, "store": store, "zoo_dir": zoo_dir, "datasets_dir": datasets_dir}


def _fresh(zoo_dir, datasets_dir, config):
    """Every cell's outcome computed afresh in memory (no store): the reference."""
    cells = [c for c in zoo_cells(ModelZoo(root=str(zoo_dir)).entries(), lambda p: "") if c.card is not None]
    return {(entry.key, cell.key): transferability_outcome(cell, cells_module.dataset_images(entry.path, config), config)
            for entry in DatasetCatalog(root=str(datasets_dir)).entries() for cell in cells}


def _scores(outcome):
    return {k: v for k, v in outcome.items() if k != "forward_seconds"}


def test_another_scoring_config_or_scorer_reuses_the_features_with_no_forward_pass(scoring, monkeypatch):
    first = scoring["score"](TransferabilityConfig())
    n_cells = len(first)
    assert n_cells >= 4 and not any(hit for _, hit in first.values())
    assert len({key for key, _ in scoring["passes"]}) == n_cells // 2  # each model ran once per dataset
    passes = len(scoring["passes"])
    assert passes == n_cells  # one batch each (a reduced dataset has under 256 training images)
    # a changed scoring config: every cell misses, no model runs, the scores are a fresh computation's
    other = TransferabilityConfig(probe_folds=3, probe_seed=1)
    second = scoring["score"](other)
    assert not any(hit for _, hit in second.values()) and len(scoring["passes"]) == passes
    fresh = _fresh(scoring["zoo_dir"], scoring["datasets_dir"], other)
    assert {k: _scores(o) for k, (o, _) in second.items()} == {k: _scores(o) for k, o in fresh.items()}
    assert any(second[k][0]["probe"] != first[k][0]["probe"] for k in first)  # the config did change the probe
    assert all(second[k][0]["logme"] == first[k][0]["logme"] for k in first)  # same features, same LogME
    # the first config's cells equal a fresh computation too (the old in-memory path)
    assert {k: _scores(o) for k, (o, _) in first.items()} == {
        k: _scores(o) for k, o in _fresh(scoring["zoo_dir"], scoring["datasets_dir"], TransferabilityConfig()).items()}
    # the forward pass's seconds are those of the pass that made the features, reported by every cell
    assert all(second[k][0]["forward_seconds"] == first[k][0]["forward_seconds"] > 0 for k in first)
    # a new scorer (the cells' code version bumped): re-scored from the same features, still no forward pass
    monkeypatch.setattr(cells_module, "CELL_CODE_VERSION", "new-scorer")
    third = scoring["score"](TransferabilityConfig())
    assert not any(hit for _, hit in third.values()) and len(scoring["passes"]) == passes
    # the same again: every cell a hit
    assert all(hit for _, hit in scoring["score"](TransferabilityConfig()).values())


def _artifacts(store, dataset):
    folder = store.root_path / FEATURES_ASSET / dataset
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_a_changed_dataset_or_checkpoint_makes_new_features_and_leaves_the_others_untouched(scoring):
    store, config = scoring["store"], TransferabilityConfig()
    first = scoring["score"](config)
    datasets = sorted({d for d, _ in first})
    models = sorted({m for _, m in first})
    before = {d: _artifacts(store, d) for d in datasets}
    assert all(len(v) == len(models) for v in before.values())
    # the dataset's content changes (one training image redrawn): its features only are new
    changed = next(iter(sorted(Path(scoring["datasets_dir"], datasets[0], "train").rglob("*.png"))))
    image = np.asarray(Image.open(changed).convert("RGB")).copy()
    image[0, 0] = 255 - image[0, 0]
    Image.fromarray(image).save(changed)
    passes = len(scoring["passes"])
    scoring["score"](config)
    assert len(scoring["passes"]) == passes + len(models)  # every model once, on the changed dataset only
    after = _artifacts(store, datasets[0])
    assert len(after) == 2 * len(models) and all(after[name] == t for name, t in before[datasets[0]].items())
    assert _artifacts(store, datasets[1]) == before[datasets[1]]
    # one checkpoint's content changes (one weight moved): that model's features only are new, on every dataset
    checkpoint = next(p for p in sorted(Path(scoring["zoo_dir"]).glob("*.safetensors")))
    tensors = load_file(checkpoint)
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 0.5
    save_file(tensors, checkpoint)
    passes = len(scoring["passes"])
    third = scoring["score"](config)
    changed_model = {m for m, _ in scoring["passes"][passes:]}
    assert len(changed_model) == 1 and len(scoring["passes"]) == passes + len(datasets)
    assert sum(not hit for _, hit in third.values()) == len(datasets)  # only that model's cells were scored again
    assert len(_artifacts(store, datasets[1])) == len(models) + 1


# ----------------------------------------------------------------------------- the S3 store


def test_features_are_published_and_read_on_the_s3_store(s3, monkeypatch):
    store = ArtifactStore(root=f"s3://{S3_BUCKET}/{uuid.uuid4().hex}")
    data, cell, calls = _images(n=40), _fake_cell(), []
    monkeypatch.setattr(features_module, "zoo_model_runner", lambda c: _fake_forward(calls, fail_at_batch=1))
    with pytest.raises(RuntimeError, match="killed mid-write"):
        cached_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION, images=lambda: data)
    assert published_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION) is None
    calls.clear()
    monkeypatch.setattr(features_module, "zoo_model_runner", lambda c: _fake_forward(calls))
    features, hit = cached_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION,
                                          images=lambda: data)
    assert not hit and calls == [40] and str(features.directory).startswith("s3://")
    assert np.array_equal(features.load(), _fake_forward()(data.images).astype(np.float64))
    again = published_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION)
    assert again.image_ids == data.ids and np.array_equal(again.load(np.array([3, 1])), features.load()[[3, 1]])
    _, hit = cached_model_features(store, cell, dataset="d", dataset_fingerprint="fp", selection=SELECTION,
                                   images=lambda: pytest.fail("a hit decodes no image"))
    assert hit and calls == [40]


# ----------------------------------------------------------------------------- the proxies' token images


def _stand_in_tokens(dataset_dir, split="train"):
    """Dataset tokens as ``write_dataset_tokens`` lays out their slots (zero features: only the slots matter)."""
    from dataclasses import asdict

    from ml_core.images import DatasetTokens, TokenWriterConfig, scan_image_folder
    from ml_core.images.tokens import plan_rows

    config = TokenWriterConfig()
    index = scan_image_folder(Path(dataset_dir), split)
    columns = plan_rows(index, config)
    rows = max(len(c) for c in columns)
    valid = np.array([[r < len(c) for c in columns] for r in range(rows)])
    return DatasetTokens(np.zeros((*valid.shape, 4), np.float32), valid, list(index.classes),
                         {"config": asdict(config), "split": split})


def test_the_proxies_read_the_scored_features_where_they_hold_the_token_images(scoring):
    from ml_core.ranking.proxies import FeatureStore, zoo_token_features

    store, config = scoring["store"], TransferabilityConfig()
    scoring["score"](config)
    cells = {c.key: c for c in zoo_cells(ModelZoo(root=str(scoring["zoo_dir"])).entries(), store.fingerprints.file_sha256)
             if c.card is not None}
    dirs = {e.key: Path(e.path) for e in DatasetCatalog(root=str(scoring["datasets_dir"])).entries()}
    tokens = {d: _stand_in_tokens(path) for d, path in dirs.items()}
    runners = {m: features_module.zoo_model_runner(cell) for m, cell in cells.items()}  # in memory: the reference
    passes = len(scoring["passes"])
    reference = zoo_token_features(runners, dirs, tokens)
    assert len(scoring["passes"]) == passes + len(cells) * len(dirs)
    # the token images are all of each (reduced) dataset's training images: the scored features hold them
    passes = len(scoring["passes"])
    shared = zoo_token_features(runners, dirs, tokens, FeatureStore(store, cells, store.fingerprints.folder))
    assert len(scoring["passes"]) == passes  # no forward pass
    for d in dirs:
        assert set(shared[d]) == set(cells)
        for m in cells:  # the same images, batched otherwise: equal up to float32 rounding
            np.testing.assert_allclose(shared[d][m], reference[d][m], rtol=1e-5, atol=1e-6)
    # scored features of a smaller subset do not hold them: features of exactly the token images, keyed as such
    subset = FeatureStore(store, cells, store.fingerprints.folder, TransferabilityConfig(max_images=10))
    own = zoo_token_features(runners, dirs, tokens, subset)
    assert len(scoring["passes"]) == passes + len(cells) * len(dirs)
    assert all(np.allclose(own[d][m], reference[d][m], rtol=1e-5, atol=1e-6) for d in dirs for m in cells)
    zoo_token_features(runners, dirs, tokens, subset)
    assert len(scoring["passes"]) == passes + len(cells) * len(dirs)  # published: read the second time
