"""The artifact store: a UPath root (local folder, ``s3://``, ``gs://``, ``memory://``).

Layout under the root::

    <asset>/<partition or _>/<cache key>/...   one published artifact (manifest.json last)
    _refs/<asset>/<partition or _>.json        which artifact is current (written by the IO manager)
    _fingerprints/<kind>-<key>.json            an input's content hash, by (path, size, mtime)
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field
from upath import UPath

from ml_core.artifacts import (
    STALE_AFTER_SECONDS,
    FingerprintCache,
    collect_stale_temporaries,
    is_safe_key,
    read_manifest,
    redact_url,
    store_root,
)
from resources.settings import default_artifact_root

UNPARTITIONED = "_"
FINGERPRINTS_DIR = "_fingerprints"
_FINGERPRINT_CACHES: dict[str, FingerprintCache] = {}  # one per store root in a process


class ArtifactStore(ConfigurableResource):
    """Where every asset's files live; ``root`` may be any fsspec URL.

    Prefer credentials from the environment or the filesystem's own config (``AWS_*`` variables,
    ``~/.aws``): a URL with credentials in it works, but only its redacted form is ever shown
    (repr, metadata, manifests, logs).
    """

    root: str = Field(default_factory=default_artifact_root, description="local path or fsspec URL")

    def __repr_args__(self):  # pydantic's repr: never show credentials of the root URL
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "root" and isinstance(value, str) else value

    def __str__(self) -> str:
        return repr(self)

    @property
    def root_path(self) -> UPath:
        return store_root(self.root)

    @property
    def fingerprints(self) -> FingerprintCache:
        """The inputs' content fingerprints, each computed once per (path, size, mtime) and recorded
        under ``_fingerprints/`` in the store (see :mod:`ml_core.artifacts.fingerprints`)."""
        if self.root not in _FINGERPRINT_CACHES:
            _FINGERPRINT_CACHES[self.root] = FingerprintCache(self.root_path / FINGERPRINTS_DIR)
        return _FINGERPRINT_CACHES[self.root]

    def _segment(self, value: str | None) -> str:
        if value is None:
            return UNPARTITIONED
        if not is_safe_key(value):
            raise ValueError(f"unsafe partition key or asset name {value!r}: refusing to build a path from it")
        return value

    def artifact_dir(self, asset: str, partition: str | None, cache_key: str) -> UPath:
        return self.root_path / self._segment(asset) / self._segment(partition) / self._segment(cache_key)

    def lookup(self, asset: str, partition: str | None, cache_key: str) -> dict[str, Any] | None:
        """The manifest of a published artifact with this key, or None (cache miss)."""
        return read_manifest(self.artifact_dir(asset, partition, cache_key))

    def ref_path(self, asset: str, partition: str | None) -> UPath:
        return self.root_path / "_refs" / self._segment(asset) / f"{self._segment(partition)}.json"

    def collect_garbage(self, older_than_s: float = STALE_AFTER_SECONDS, now: float | None = None) -> list[UPath]:
        """Remove staging leftovers of killed runs anywhere in the store (see
        :func:`ml_core.artifacts.storage.collect_stale_temporaries`); published artifacts are never touched."""
        removed: list[UPath] = []
        root = self.root_path
        if not root.exists():
            return removed
        for asset_dir in [p for p in root.iterdir() if p.is_dir()]:
            removed += collect_stale_temporaries(asset_dir, older_than_s=older_than_s, now=now)
            for partition_dir in [p for p in asset_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]:
                removed += collect_stale_temporaries(partition_dir, older_than_s=older_than_s, now=now)
        return removed
