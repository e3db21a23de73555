"""Which model embeddings are missing or stale, read from the artifact store's manifests.

An embedding is stale when it was built from another autoencoder (retrained) or from other
model parameters (replaced checkpoint) than the current ones. The comparison uses the content
hashes recorded in the embedding's manifest, so it is exact and needs no Dagster event query.

It reads three small objects per model (two ``_refs`` pointers and a manifest). On an object store each
read is a request (about 19 ms each against moto's S3 server on loopback: 33,000 reads for 11,000 models
would be 10 minutes, past the schedule's 60 s), so the models are checked by a pool of threads: the
reads wait on the network, not on the CPU (``benchmarks/rehearsal.py --s3-models``). Threads are not
enough against moto (1.7x: 24 s per 1,000 models), so :func:`sweep_stale_models` checks the models in
batches until a time budget is spent and says where the next sweep resumes.
"""

import bisect
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from assets.shared.artifacts import current_ref
from resources.artifact_store import ArtifactStore


@dataclass(frozen=True)
class StaleModel:
    key: str
    reason: str  # "missing", "autoencoder retrained", "parameters changed", "parameters missing"
    autoencoder_hash: str


READ_THREADS = 16  # concurrent reads of the store: latency-bound on an object store


def _staleness(store: ArtifactStore, key: str, autoencoder_hash: str) -> str | None:
    """Why the model's embedding is stale, or None when it is current."""
    embedding = current_ref(store, "model_embeddings", key)
    if embedding is None:
        return "missing"
    manifest = store.lookup("model_embeddings", key, embedding.cache_key) or {}
    inputs = manifest.get("inputs", {})
    if inputs.get("autoencoder") != autoencoder_hash:
        return "autoencoder retrained"
    params = current_ref(store, "model_parameters", key)
    if params is None:
        return "parameters missing"
    if inputs.get("model_parameters") != params.content_hash:
        return "parameters changed"
    return None


def stale_model_embeddings(store: ArtifactStore, model_keys: Iterable[str],
                           threads: int = READ_THREADS) -> list[StaleModel]:
    """Model partitions whose embedding is missing or not built from the current inputs (sorted by key)."""
    autoencoder = current_ref(store, "autoencoder", None)
    if autoencoder is None:
        return []  # nothing can be embedded before an autoencoder exists
    keys = sorted(model_keys)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        reasons = list(pool.map(lambda key: _staleness(store, key, autoencoder.content_hash), keys))
    return [StaleModel(key, reason, autoencoder.content_hash) for key, reason in zip(keys, reasons) if reason]


@dataclass(frozen=True)
class Sweep:
    """What one budgeted sweep found: the stale models among ``checked`` ones, and where the next resumes."""

    stale: list[StaleModel]
    checked: int
    resume_at: str | None  # the first key not checked (None: the sweep reached the last key)


def sweep_stale_models(store: ArtifactStore, model_keys: Iterable[str], start: str | None, budget_s: float,
                       batch: int = 256, threads: int = READ_THREADS) -> Sweep:
    """:func:`stale_model_embeddings` over the sorted keys from ``start`` on, one batch at a time,
    until ``budget_s`` is spent (at least one batch is checked)."""
    keys = sorted(model_keys)
    position = bisect.bisect_left(keys, start) if start else 0
    began, stale, checked = time.perf_counter(), [], 0
    while position < len(keys):
        if checked and time.perf_counter() - began > budget_s:
            return Sweep(stale, checked, keys[position])
        chunk = keys[position:position + batch]
        stale += stale_model_embeddings(store, chunk, threads=threads)
        checked += len(chunk)
        position += len(chunk)
    return Sweep(stale, checked, None)
