"""The artifact store: a UPath root (local folder, ``s3://``, ``gs://``, ``memory://``).

Layout under the root::

    <asset>/<partition or _>/<cache key>/...   one published artifact (manifest.json last)
    _refs/<asset>/<partition or _>.json        which artifact is current (written by the IO manager)
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field
from upath import UPath

from ml_core.naming import is_safe_key
from ml_core.storage import as_upath, read_manifest
from resources.settings import default_artifact_root

UNPARTITIONED = "_"


class ArtifactStore(ConfigurableResource):
    """Where every asset's files live; ``root`` may be any fsspec URL."""

    root: str = Field(default_factory=default_artifact_root, description="local path or fsspec URL")

    @property
    def root_path(self) -> UPath:
        return as_upath(self.root)

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
