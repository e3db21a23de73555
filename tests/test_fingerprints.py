"""One content fingerprint per input: computed once per (path, size, mtime), content-addressed."""

import os

import pytest

import ml_core.artifacts.fingerprints as fingerprints
from ml_core.artifacts import FingerprintCache, folder_content_fingerprint, sha256_file


@pytest.fixture
def counted(monkeypatch):
    """Count the files whose bytes are hashed."""
    reads = []

    def counting(path, *args, **kwargs):
        reads.append(str(path))
        return sha256_file(path, *args, **kwargs)

    monkeypatch.setattr(fingerprints, "sha256_file", counting)
    return reads


def _dataset(root):
    for split, cls, name, data in (("train", "a", "0.png", b"x"), ("train", "b", "0.png", b"y"), ("test", "a", "1.png", b"z")):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        (root / split / cls / name).write_bytes(data)
    (root / "dataset.json").write_text('{"family": "f"}')
    return root


def test_a_file_is_hashed_once_per_content_and_the_record_survives_the_process(tmp_path, counted):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    cache = FingerprintCache(tmp_path / "store" / "_fingerprints")
    first = cache.file_sha256(path)
    assert first == sha256_file(path) and cache.file_sha256(path) == first
    assert len(counted) == 1  # the second call read no byte
    again = FingerprintCache(tmp_path / "store" / "_fingerprints")  # another process, same store
    assert again.file_sha256(path) == first and len(counted) == 1

    path.write_bytes(b"other weights")  # replaced: new size and mtime, so a new record
    assert cache.file_sha256(path) == sha256_file(path) != first
    os.utime(path, ns=(1, 1))  # touched, same bytes: hashed again, same fingerprint
    assert cache.file_sha256(path) == sha256_file(path)


def test_a_folder_fingerprint_is_its_content(tmp_path, counted):
    dataset = _dataset(tmp_path / "d")
    cache = FingerprintCache()  # in memory only
    first = cache.folder(dataset)
    assert first == folder_content_fingerprint(dataset)
    reads = len(counted)
    assert cache.folder(dataset) == first and len(counted) == reads  # cached by the listing

    (dataset / "dataset.json").write_text('{"family": "g"}')  # the card is not content
    (dataset / "train" / ".DS_Store").write_bytes(b"junk")  # nor are hidden files
    assert cache.folder(dataset) == first
    copy = _dataset(tmp_path / "copy")  # the same files elsewhere: the same fingerprint
    assert cache.folder(copy) == first

    image = dataset / "train" / "a" / "0.png"
    image.write_bytes(b"x")  # rewritten with the same bytes (new mtime): the same fingerprint
    assert cache.folder(dataset) == first
    image.write_bytes(b"changed")
    assert cache.folder(dataset) != first
    image.rename(dataset / "train" / "b" / "moved.png")  # a relabelled image changes it too
    assert cache.folder(dataset) not in (first, folder_content_fingerprint(copy))
