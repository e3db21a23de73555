"""Artifact paths on a local disk or any fsspec filesystem, published atomically.

Every artifact is a directory (or a single file) that is first written under a temporary
sibling name and then renamed into place, with a ``manifest.json`` written last inside it.
A reader treats a directory without a manifest as absent, so an interrupted write is never
read as valid. Paths are :class:`upath.UPath`, so ``s3://``, ``gs://`` and ``memory://`` roots
go through the same code as local folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zarr
import zarr.storage
from upath import UPath

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_TMP_MARK = ".tmp-"


def as_upath(path: str | os.PathLike[str] | UPath) -> UPath:
    """Return ``path`` as a UPath (a local path stays a local path)."""
    return path if isinstance(path, UPath) else UPath(path)


def is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def zarr_store(path: UPath, *, read_only: bool = False) -> zarr.abc.store.Store:
    """A zarr v3 store rooted at ``path``: LocalStore for local paths, FsspecStore otherwise."""
    path = as_upath(path)
    if is_local(path):
        return zarr.storage.LocalStore(Path(path.path), read_only=read_only)
    return zarr.storage.FsspecStore.from_url(str(path), read_only=read_only)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: UPath | Path, block_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in blocks (memory bounded)."""
    digest = hashlib.sha256()
    with as_upath(path).open("rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def stable_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) used for hashing configs and manifests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def hash_parts(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (cache keys, data versions)."""
    return sha256_bytes(stable_json(list(parts)).encode())[:32]


def write_json(path: UPath, value: Any) -> None:
    """Write JSON to ``path`` through a temporary sibling then rename (atomic on local disks)."""
    path = as_upath(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
    _rename(tmp, path, replace=True)


def read_json(path: UPath) -> Any:
    return json.loads(as_upath(path).read_text())


def read_manifest(directory: UPath) -> dict[str, Any] | None:
    """The manifest of a published artifact directory, or None if absent or unreadable."""
    path = as_upath(directory) / MANIFEST_NAME
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    return value if isinstance(value, dict) else None


def _rename(src: UPath, dst: UPath, *, replace: bool) -> None:
    if is_local(src):
        if replace:
            os.replace(src.path, dst.path)
        else:
            os.rename(src.path, dst.path)  # fails if dst is a non-empty directory
        return
    fs = src.fs
    if not replace and fs.exists(dst.path):
        raise FileExistsError(str(dst))
    fs.mv(src.path, dst.path, recursive=True)


def remove_tree(path: UPath) -> None:
    path = as_upath(path)
    with contextlib.suppress(FileNotFoundError):
        if is_local(path):
            import shutil

            p = Path(path.path)
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        elif path.fs.exists(path.path):
            path.fs.rm(path.path, recursive=True)


@contextlib.contextmanager
def staged_directory(final: UPath) -> Iterator[UPath]:
    """Yield a temporary directory that is renamed to ``final`` when the block succeeds.

    The caller writes everything, then :func:`write_manifest` last. On error the temporary
    directory is removed and ``final`` is untouched. If ``final`` already holds a published
    artifact (a concurrent run with the same content-addressed key won), ours is discarded.
    """
    final = as_upath(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}{_TMP_MARK}{uuid.uuid4().hex}"
    tmp.mkdir(parents=True, exist_ok=False)
    try:
        yield tmp
        if read_manifest(tmp) is None:
            raise RuntimeError(f"{tmp}: artifact has no {MANIFEST_NAME}; refusing to publish it")
        if read_manifest(final) is not None:
            logger.info("%s already published by another run; keeping that copy", final)
            remove_tree(tmp)
            return
        if final.exists():  # an unpublished leftover (no manifest): replace it
            remove_tree(final)
        try:
            _rename(tmp, final, replace=False)
        except OSError:
            if read_manifest(final) is None:
                raise
            remove_tree(tmp)
    except BaseException:
        remove_tree(tmp)
        raise


def write_manifest(directory: UPath, manifest: dict[str, Any]) -> None:
    """Write the manifest that marks ``directory`` complete; call it last."""
    write_json(as_upath(directory) / MANIFEST_NAME, manifest)
