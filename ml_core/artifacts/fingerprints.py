"""One content fingerprint per input file or folder, computed once and cached by (path, size, mtime).

A fingerprint is what a cache key says about an input: the SHA-256 of a checkpoint's bytes, or of
every file of a dataset folder (relative path and bytes). Content, not modification times: a
byte-identical copy or a touched file keeps its fingerprint, so nothing is recomputed for it.

Hashing is the expensive part (a checkpoint is read whole), so :class:`FingerprintCache` remembers
each result under a key of the input's resolved path, size(s) and modification time(s) (one
directory walk, no byte read): in the process, and, given a folder (the artifact store's
``_fingerprints/``), across processes and runs. A file rewritten with the same size within the same
nanosecond tick would keep a stale record; every other change (replace, append, touch, rename,
add or remove a file) gives a new key and a new hash.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from upath import UPath

from ml_core.artifacts.storage import as_upath, hash_parts, read_json, sha256_file, write_json

logger = logging.getLogger(__name__)


def folder_listing(folder: Path) -> list[tuple[str, int, int]]:
    """``(relative path, size, mtime_ns)`` of every file a folder fingerprint covers: the files inside
    its sub-folders (a dataset's splits; a top-level card such as ``dataset.json`` is not content),
    in sorted order; hidden files and folders are left out. Symbolic links are followed."""
    folder = Path(folder)
    entries = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if Path(root) == folder:
            continue
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                stat = path.stat()
            except OSError:
                entries.append((path.relative_to(folder).as_posix(), -1, -1))
                continue
            entries.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return entries


def folder_content_fingerprint(folder: Path, listing: list[tuple[str, int, int]] | None = None) -> str:
    """The fingerprint of a folder's content (see :func:`folder_listing`; pass one already made),
    computed by reading every file; an unreadable file counts as such (its name, no bytes)."""
    folder = Path(folder)
    entries = []
    for rel, size, _ in folder_listing(folder) if listing is None else listing:
        digest = sha256_file(folder / rel) if size >= 0 else "unreadable"
        entries.append((rel, digest))
    return hash_parts("folder_content", entries)


class FingerprintCache:
    """Content fingerprints of files and folders, each computed once per (path, size, mtime).

    ``root``: a folder (local or any fsspec URL) where records persist, one small JSON each; None
    keeps them in this process only.
    """

    def __init__(self, root: UPath | str | None = None):
        self.root = as_upath(root) if root is not None else None
        self._memory: dict[str, str] = {}

    def _cached(self, kind: str, key_parts: Any, compute: Any) -> str:
        key = f"{kind}-{hash_parts(kind, key_parts)}"
        if key in self._memory:
            return self._memory[key]
        record = self.root / f"{key}.json" if self.root is not None else None
        if record is not None:
            try:
                value = read_json(record)["sha256"]
            except (FileNotFoundError, KeyError, TypeError, ValueError, OSError):
                value = None
            if isinstance(value, str):
                self._memory[key] = value
                return value
        value = compute()
        self._memory[key] = value
        if record is not None:
            try:
                write_json(record, {"sha256": value, "kind": kind})
            except OSError as error:  # a cache that cannot be written only costs a recomputation
                logger.warning("could not record a fingerprint in %s: %s", self.root, error)
        return value

    def file_sha256(self, path: Path | str) -> str:
        """SHA-256 of a file's bytes (a checkpoint, a weights file, a table)."""
        path = Path(path).resolve()
        stat = path.stat()
        return self._cached("file", [str(path), stat.st_size, stat.st_mtime_ns], lambda: sha256_file(path))

    def folder(self, folder: Path | str) -> str:
        """:func:`folder_content_fingerprint` of a folder (a dataset, a sample of source images)."""
        folder = Path(folder).resolve()
        listing = folder_listing(folder)
        return self._cached("folder", [str(folder), listing], lambda: folder_content_fingerprint(folder, listing))
