"""What every asset shares: content-addressed caching, artifact references and the IO manager.

An asset's *cache key* hashes its name, ``code_version``, resolved config and the content hashes
of its inputs. If the store already holds a published artifact under that key, the asset does
no work: it returns the stored reference, reports the stored content hash as its data version,
and says ``cache_hit: true``. Otherwise it builds the artifact in a temporary directory, writes
the manifest last and renames it into place (:func:`ml_core.storage.staged_directory`).

Assets pass :class:`ArtifactRef` values (small JSON pointers), never the data itself; the
:class:`ArtifactRefIOManager` stores them under ``_refs/`` in the artifact store, each written
atomically (temporary sibling, then rename).

After publishing, the partition's folder is swept of staging leftovers of killed runs that have
shown no sign of life for hours (:func:`ml_core.storage.collect_stale_temporaries`). Paths in
metadata, manifests and logs go through :func:`ml_core.storage.redact_url`, so credentials in an
artifact-root URL are never written out.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dagster import (
    ConfigurableIOManager,
    DataVersion,
    InputContext,
    MetadataValue,
    OutputContext,
)
from upath import UPath

from ml_core.storage import (
    collect_stale_temporaries,
    hash_parts,
    read_json,
    redact_url,
    staged_directory,
    write_json,
    write_manifest,
)
from resources.artifact_store import ArtifactStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArtifactRef:
    """Pointer to one published artifact: ``<root>/<asset>/<partition>/<cache_key>``."""

    asset: str
    partition: str | None
    cache_key: str
    content_hash: str

    def directory(self, store: ArtifactStore) -> UPath:
        return store.artifact_dir(self.asset, self.partition, self.cache_key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactRef:
        return cls(**{k: data[k] for k in ("asset", "partition", "cache_key", "content_hash")})


@dataclass(frozen=True)
class CachedResult:
    ref: ArtifactRef
    manifest: dict[str, Any]
    cache_hit: bool
    seconds: float

    @property
    def data_version(self) -> DataVersion:
        return DataVersion(self.ref.content_hash)

    @property
    def summary(self) -> dict[str, Any]:
        return self.manifest.get("summary", {})

    def base_metadata(self) -> dict[str, Any]:
        return {
            "cache_hit": self.cache_hit,
            "cache_key": self.ref.cache_key,
            "content_hash": self.ref.content_hash,
            "path": MetadataValue.path(redact_url(str(self.manifest.get("path", "")))),
            "seconds": round(self.seconds, 3),
        }


def materialize_cached(
    store: ArtifactStore,
    *,
    asset: str,
    partition: str | None,
    code_version: str,
    config: dict[str, Any],
    inputs: dict[str, str],
    build: Callable[[UPath], tuple[str, dict[str, Any]]],
    log: logging.Logger | Any | None = logger,
) -> CachedResult:
    """Return the artifact for (code version, config, inputs), building it only on a cache miss.

    ``build(directory)`` writes the artifact's files into ``directory`` and returns
    ``(content_hash, summary)``; ``summary`` (JSON-safe) is kept in the manifest so that a cache
    hit can report the same metadata without recomputing anything. ``log=None`` drops the
    hit / miss messages (per-cell caches: hundreds per run); warnings then go to this module's logger.
    """
    quiet = log is None
    log = logger if log is None else log
    start = time.perf_counter()
    cache_key = hash_parts(asset, code_version, config, sorted(inputs.items()))
    final = store.artifact_dir(asset, partition, cache_key)
    manifest = store.lookup(asset, partition, cache_key)
    if manifest is not None:
        if not quiet:
            log.info(f"cache hit for {asset}[{partition or '-'}] ({cache_key})")
        ref = ArtifactRef(asset, partition, cache_key, manifest["content_hash"])
        return CachedResult(ref, manifest, True, time.perf_counter() - start)
    if not quiet:
        log.info(f"cache miss for {asset}[{partition or '-'}]: building {cache_key}")
    with staged_directory(final) as tmp:
        content_hash, summary = build(tmp)
        manifest = {
            "asset": asset,
            "partition": partition,
            "cache_key": cache_key,
            "content_hash": content_hash,
            "code_version": code_version,
            "config": config,
            "inputs": inputs,
            "summary": summary,
            "path": redact_url(str(final)),
            "created_unix": time.time(),
        }
        write_manifest(tmp, manifest)
    published = store.lookup(asset, partition, cache_key) or manifest
    ref = ArtifactRef(asset, partition, cache_key, published["content_hash"])
    try:
        collect_stale_temporaries(final.parent)
    except Exception as error:  # housekeeping must never fail a materialization
        log.warning(f"could not sweep staging leftovers of {asset}[{partition or '-'}]: {type(error).__name__}: {error}")
    return CachedResult(ref, published, False, time.perf_counter() - start)


def png_markdown(path: Path | UPath, alt: str = "plot") -> MetadataValue:
    """A PNG embedded as markdown (shows inline in the Dagster UI)."""
    data = base64.b64encode(UPath(path).read_bytes()).decode()
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def current_ref(store: ArtifactStore, asset: str, partition: str | None) -> ArtifactRef | None:
    """The asset partition's current artifact (its ``_refs`` pointer), or None if never materialized."""
    path = store.ref_path(asset, partition)
    try:
        return ArtifactRef.from_dict(read_json(path))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{redact_url(path)}: corrupt artifact reference ({type(error).__name__}: {error}); "
            f"re-materialize {asset}[{partition or '-'}] to rewrite it"
        ) from error


class ArtifactRefIOManager(ConfigurableIOManager):
    """Stores each output's :class:`ArtifactRef` as JSON at ``<root>/_refs/<asset>/<partition>.json``.

    An input declared with ``AssetIn(metadata={"all_partitions": True})`` is loaded as a dict
    ``{partition_key: ArtifactRef}`` over the upstream partitions; partitions not materialized
    yet are left out (and logged). Any other input is one ``ArtifactRef``.
    """

    store: ArtifactStore

    def _asset_name(self, context: InputContext | OutputContext) -> str:
        return context.asset_key.path[-1]

    def handle_output(self, context: OutputContext, obj: ArtifactRef) -> None:
        if not isinstance(obj, ArtifactRef):
            raise TypeError(f"{context.asset_key}: expected an ArtifactRef output, got {type(obj).__name__}")
        partition = context.asset_partition_key if context.has_asset_partitions else None
        write_json(self.store.ref_path(self._asset_name(context), partition), obj.to_dict())

    def _load_one(self, asset: str, partition: str | None) -> ArtifactRef | None:
        return current_ref(self.store, asset, partition)

    def load_input(self, context: InputContext) -> ArtifactRef | dict[str, ArtifactRef]:
        asset = self._asset_name(context)
        metadata = context.definition_metadata or {}
        if metadata.get("all_partitions"):
            refs: dict[str, ArtifactRef] = {}
            missing = []
            for key in sorted(context.asset_partition_keys):
                ref = self._load_one(asset, key)
                if ref is None:
                    missing.append(key)
                else:
                    refs[key] = ref
            if missing:
                context.log.warning(f"{asset}: {len(missing)} partition(s) not materialized yet, left out: {missing[:20]}")
            return refs
        partition = context.asset_partition_key if context.has_asset_partitions else None
        ref = self._load_one(asset, partition)
        if ref is None:
            raise FileNotFoundError(
                f"{asset}[{partition or '-'}] has not been materialized yet: materialize it first "
                f"(no reference at {redact_url(self.store.ref_path(asset, partition))})"
            )
        return ref
