"""Content-addressed caching over an artifact store, without Dagster.

An artifact's *cache key* hashes its name, code version, resolved config and the content hashes of its
inputs. :func:`build_cached` returns the published manifest under that key when the store holds one (a
cache hit: no work), else builds the artifact in a staging directory and publishes it, manifest last
(:func:`~ml_core.artifacts.storage.staged_directory`: a killed build leaves nothing a reader accepts, on a
local disk or an object store). ``assets.shared.artifacts.materialize_cached`` wraps it for the Dagster
assets; ml_core calls it directly for artifacts that are not assets (a zoo model's features of a dataset,
:mod:`ml_core.ground_truth.features`), so that both go through one publication path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from upath import UPath

from ml_core.artifacts.storage import collect_stale_temporaries, hash_parts, redact_url, staged_directory, write_manifest

logger = logging.getLogger(__name__)


class ArtifactStoreLike(Protocol):
    """What caching needs of an artifact store (``resources.artifact_store.ArtifactStore``)."""

    def artifact_dir(self, asset: str, partition: str | None, cache_key: str) -> UPath: ...

    def lookup(self, asset: str, partition: str | None, cache_key: str) -> dict[str, Any] | None: ...


def cache_key_of(asset: str, code_version: str, config: dict[str, Any], inputs: dict[str, str]) -> str:
    """The content address of an artifact: its asset, code version, config and inputs' content hashes."""
    return hash_parts(asset, code_version, config, sorted(inputs.items()))


def build_cached(
    store: ArtifactStoreLike,
    *,
    asset: str,
    partition: str | None,
    code_version: str,
    config: dict[str, Any],
    inputs: dict[str, str],
    build: Callable[[UPath], tuple[str, dict[str, Any]]],
    log: logging.Logger | Any | None = logger,
) -> tuple[str, dict[str, Any], bool]:
    """``(cache key, manifest, cache hit)`` of the artifact for (code version, config, inputs), built only
    on a cache miss.

    ``build(directory)`` writes the artifact's files into ``directory`` and returns ``(content_hash,
    summary)``; ``summary`` (JSON-safe) is kept in the manifest so that a cache hit can report it without
    recomputing anything. ``log=None`` drops the hit / miss messages (per-cell caches: hundreds per run);
    warnings then go to this module's logger. When another run published the same key meanwhile, its
    manifest is returned (content-addressed: the same artifact).
    """
    quiet = log is None
    log = logger if log is None else log
    cache_key = cache_key_of(asset, code_version, config, inputs)
    final = store.artifact_dir(asset, partition, cache_key)
    manifest = store.lookup(asset, partition, cache_key)
    if manifest is not None:
        if not quiet:
            log.info(f"cache hit for {asset}[{partition or '-'}] ({cache_key})")
        return cache_key, manifest, True
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
    try:
        collect_stale_temporaries(final.parent)
    except Exception as error:  # housekeeping must never fail a materialization
        log.warning(f"could not sweep staging leftovers of {asset}[{partition or '-'}]: {type(error).__name__}: {error}")
    return cache_key, published, False
