"""What every asset shares: content-addressed caching, artifact references and the IO manager.

An asset's *cache key* hashes its name, ``code_version``, resolved config and the content hashes
of its inputs. If the store already holds a published artifact under that key, the asset does
no work: it returns the stored reference, reports the stored content hash as its data version,
and says ``cache_hit: true``. Otherwise it builds the artifact in a temporary directory, writes
the manifest last and renames it into place (:func:`ml_core.artifacts.storage.staged_directory`).

Assets pass :class:`ArtifactRef` values (small JSON pointers), never the data itself; the
:class:`ArtifactRefIOManager` stores them under ``_refs/`` in the artifact store, each written
atomically (temporary sibling, then rename), and gives a downstream asset each input as an
:class:`Artifact`: the reference plus ``load()``, which reads it as its ml_core object
(:mod:`assets.shared.loaders`), so no asset module needs another's code.

Every asset's body has one shape: its inputs' content hashes, then :func:`materialize_asset`
(cache lookup or build, under the asset's own name, code version and partition), then
``result.output(metadata)``.

After publishing, the partition's folder is swept of staging leftovers of killed runs that have
shown no sign of life for hours (:func:`ml_core.artifacts.storage.collect_stale_temporaries`). Paths in
metadata, manifests and logs go through :func:`ml_core.artifacts.storage.redact_url`, so credentials in an
artifact-root URL are never written out.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    BetaWarning,
    ConfigurableIOManager,
    DataVersion,
    InputContext,
    MetadataValue,
    Output,
    OutputContext,
)
from upath import UPath

from assets.shared.loaders import load_artifact
from ml_core.artifacts import build_cached, cache_key_of, read_json, redact_url, write_json
from ml_core.evaluation import EvaluationData, evaluation_data
from ml_core.weights import ModelCard
from ml_core.images import dataset_descriptor
from ml_core.ranking.baselines import source_descriptor_matrix
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

    def artifact(self, store: ArtifactStore) -> Artifact:
        """The published artifact, loadable (as a downstream asset receives it)."""
        return Artifact(self.ref, store)

    def output(self, metadata: Mapping[str, Any] | None = None) -> Output:
        """The asset's ``Output``: the reference, its content hash as the data version, the base
        metadata (cache hit, key, path, seconds) and ``metadata``."""
        with warnings.catch_warnings():  # Output(data_version=...) is a beta API: said once here, not per run
            warnings.simplefilter("ignore", BetaWarning)
            return Output(self.ref, data_version=self.data_version, metadata={**self.base_metadata(), **(metadata or {})})


@dataclass(frozen=True)
class Artifact:
    """An upstream input as an asset receives it: the published reference, and the store it lives in."""

    ref: ArtifactRef
    store: ArtifactStore

    @property
    def content_hash(self) -> str:
        return self.ref.content_hash

    @property
    def directory(self) -> UPath:
        return self.ref.directory(self.store)

    def load(self) -> Any:
        """The artifact as its ml_core object (see :mod:`assets.shared.loaders`)."""
        return load_artifact(self.ref.asset, self.directory)

    def manifest(self) -> dict[str, Any]:
        """The published manifest, read afresh from the store."""
        return self.store.lookup(self.ref.asset, self.ref.partition, self.ref.cache_key) or {}

    def summary(self) -> dict[str, Any]:
        """The summary the asset kept in its manifest (what a cache hit reports)."""
        return self.manifest().get("summary", {})


class LoadedArtifacts(Mapping[str, Any]):
    """``{partition: object}`` over several inputs, each loaded on first access and kept."""

    def __init__(self, artifacts: Mapping[str, Artifact]):
        self._artifacts = dict(artifacts)
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._loaded:
            self._loaded[key] = self._artifacts[key].load()
        return self._loaded[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._artifacts)

    def __len__(self) -> int:
        return len(self._artifacts)


def source_descriptors(artifacts: Mapping[str, Artifact], models: Sequence[str]) -> np.ndarray | None:
    """``(N, D)`` source-sample descriptors of ``models`` from their ``model_source_tokens`` (NaN rows:
    no sample; None if no model has one). Models sharing a sample share its artifact: each is read once."""
    by_artifact: dict[tuple[str | None, str], np.ndarray | None] = {}
    descriptors = []
    for model in models:
        artifact = artifacts.get(model)
        if artifact is None:
            descriptors.append(None)
            continue
        key = (artifact.ref.partition, artifact.ref.cache_key)
        if key not in by_artifact:
            tokens = artifact.load()
            by_artifact[key] = dataset_descriptor(tokens) if tokens is not None else None
        descriptors.append(by_artifact[key])
    return source_descriptor_matrix(descriptors)


def embedding_tokens(embeddings: Mapping[str, Artifact]) -> dict[str, np.ndarray]:
    """``{model: pooled token}`` of the ``model_embeddings`` inputs."""
    return {model: artifact.load().token for model, artifact in embeddings.items()}


def model_attributes(cards: Mapping[str, ModelCard], parameters: Mapping[str, Artifact]) -> dict[str, dict[str, Any]]:
    """``{model: {"n_parameters", "source_accuracy"}}``: what the data-free priors read besides the history.
    The parameter count is the card's, else the number of values ``model_parameters`` flattened; the
    source accuracy is the card's (None: unknown)."""
    out = {}
    for model, artifact in parameters.items():
        card = cards.get(model)
        count = card.parameter_count if card is not None and card.parameter_count else None
        out[model] = {"n_parameters": count or artifact.summary().get("n_parameters"),
                      "source_accuracy": card.source_accuracy if card is not None else None}
    return out


def evaluation_inputs(
    ranks: Artifact,
    embeddings: Mapping[str, Artifact],
    dataset_tokens: Mapping[str, Artifact],
    families: Mapping[str, str],
    transferability: Mapping[str, Artifact],
    sources: Mapping[str, Artifact],
    attributes: Mapping[str, Mapping[str, Any]] | None = None,
) -> EvaluationData:
    """The held-out evaluation's inputs from the artifacts that hold them (``ranker_evaluation``'s, or a
    store's current ones): :func:`ml_core.evaluation.evaluation_data` of their loaded objects; only the
    labelled datasets' tokens are read. ``attributes``: :func:`model_attributes`."""
    models = sorted(embeddings)
    return evaluation_data(
        ranks.load(),
        embedding_tokens(embeddings),
        LoadedArtifacts(dataset_tokens),
        families,
        {d: a.load()["scores"] for d, a in transferability.items()},
        source_descriptors(sources, models) if sources else None,
        attributes,
    )


def content_hashes(artifacts: Mapping[str, Artifact], prefix: str) -> dict[str, str]:
    """``{"<prefix>:<partition>": content hash}``: the cache-key inputs of a multi-partition input."""
    return {f"{prefix}:{key}": artifact.content_hash for key, artifact in artifacts.items()}


def materialize_cached(store: ArtifactStore, **options: Any) -> CachedResult:
    """Return the artifact for (code version, config, inputs), building it only on a cache miss:
    :func:`ml_core.artifacts.build_cached` (the one publication path of the assets and of ml_core's own
    cached artifacts, with its keyword options: ``asset``, ``partition``, ``code_version``, ``config``,
    ``inputs``, ``build`` and ``log``) as a :class:`CachedResult`.

    ``build(directory)`` writes the artifact's files into ``directory`` and returns
    ``(content_hash, summary)``; ``summary`` (JSON-safe) is kept in the manifest so that a cache
    hit can report the same metadata without recomputing anything. ``log=None`` drops the
    hit / miss messages (per-cell caches: hundreds per run).
    """
    options.setdefault("log", logger)
    start = time.perf_counter()
    cache_key, manifest, hit = build_cached(store, **options)
    ref = ArtifactRef(options["asset"], options["partition"], cache_key, manifest["content_hash"])
    return CachedResult(ref, manifest, hit, time.perf_counter() - start)


_PLANNING: contextvars.ContextVar[bool] = contextvars.ContextVar("modelrec_planning", default=False)


class Planned(Exception):  # noqa: N818 - a signal, not an error: the plan stops the asset's body with it
    """Raised by :func:`materialize_asset` in :func:`planning` mode instead of building: the cache key
    the asset computed from its config and inputs, and whether the store holds it (``published``)."""

    def __init__(self, asset: str, partition: str | None, cache_key: str, published: bool):
        super().__init__(asset, partition, cache_key, published)
        self.asset, self.partition, self.cache_key, self.published = asset, partition, cache_key, published


@contextlib.contextmanager
def planning() -> Iterator[None]:
    """Within this block, :func:`materialize_asset` computes its cache key and raises :class:`Planned`
    instead of looking it up or building (see :mod:`pipelines.plan`): an asset body invoked directly
    then costs only its input fingerprints."""
    token = _PLANNING.set(True)
    try:
        yield
    finally:
        _PLANNING.reset(token)


def materialize_asset(
    context: AssetExecutionContext,
    store: ArtifactStore,
    *,
    config: dict[str, Any],
    inputs: dict[str, str],
    build: Callable[[UPath], tuple[str, dict[str, Any]]],
    partition: str | None = None,
) -> CachedResult:
    """:func:`materialize_cached` for the asset ``context`` runs: its name, its ``code_version`` and its
    partition (``partition`` overrides it, e.g. an artifact shared by several partitions)."""
    key = context.asset_key
    if partition is None and context.has_partition_key:
        partition = context.partition_key
    code_version = context.assets_def.code_versions_by_key[key] or ""
    if _PLANNING.get():
        cache_key = cache_key_of(key.path[-1], code_version, config, inputs)
        raise Planned(key.path[-1], partition, cache_key, store.lookup(key.path[-1], partition, cache_key) is not None)
    return materialize_cached(
        store,
        asset=key.path[-1],
        partition=partition,
        code_version=code_version,
        config=config,
        inputs=inputs,
        build=build,
        log=context.log,
    )


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


def all_partitions(*, all_upstream: bool = False) -> AssetIn:
    """An input that receives every materialized upstream partition as ``{partition: Artifact}``.

    ``all_upstream``: also when the downstream asset is partitioned (``AllPartitionMapping``: a
    dataset's recommendations read every model's embedding)."""
    mapping = AllPartitionMapping() if all_upstream else None
    return AssetIn(partition_mapping=mapping, metadata={"all_partitions": True})


def optional_input() -> AssetIn:
    """An input that may not be materialized yet: the asset then receives None (e.g. the result history
    before any result was reported), instead of the run failing."""
    return AssetIn(metadata={"optional": True})


def current_artifact(store: ArtifactStore, asset: str, partition: str | None) -> Artifact | None:
    """:func:`current_ref` as an :class:`Artifact` (loadable), or None if never materialized."""
    ref = current_ref(store, asset, partition)
    return None if ref is None else Artifact(ref, store)


def partition_artifacts(store: ArtifactStore, asset: str, keys: Sequence[str]) -> tuple[dict[str, Artifact], list[str]]:
    """``({partition: Artifact}, missing)`` over ``keys``: what an ``all_partitions`` input receives (the
    IO manager, and :mod:`pipelines.plan` which must see the same), and the keys not materialized yet."""
    found: dict[str, Artifact] = {}
    missing: list[str] = []
    for key in keys:
        artifact = current_artifact(store, asset, key)
        if artifact is None:
            missing.append(key)
        else:
            found[key] = artifact
    return found, missing


def current_artifacts(store: ArtifactStore, asset: str) -> dict[str, Artifact]:
    """Every materialized partition of a partitioned asset: ``{partition: Artifact}``."""
    folder = store.root_path / "_refs" / asset
    if not folder.exists():
        return {}
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json" and not path.name.startswith("."):
            artifact = current_artifact(store, asset, path.stem)
            if artifact is not None:
                found[path.stem] = artifact
    return found


class ArtifactRefIOManager(ConfigurableIOManager):
    """Stores each output's :class:`ArtifactRef` as JSON at ``<root>/_refs/<asset>/<partition>.json``.

    An input declared with ``AssetIn(metadata={"all_partitions": True})`` is loaded as a dict
    ``{partition_key: Artifact}`` over the upstream partitions; partitions not materialized
    yet are left out (and logged). Any other input is one :class:`Artifact`, or None for an
    :func:`optional_input` not materialized yet.
    """

    store: ArtifactStore

    def _asset_name(self, context: InputContext | OutputContext) -> str:
        return context.asset_key.path[-1]

    def handle_output(self, context: OutputContext, obj: ArtifactRef) -> None:
        if not isinstance(obj, ArtifactRef):
            raise TypeError(f"{context.asset_key}: expected an ArtifactRef output, got {type(obj).__name__}")
        partition = context.asset_partition_key if context.has_asset_partitions else None
        write_json(self.store.ref_path(self._asset_name(context), partition), obj.to_dict())

    def _load_one(self, asset: str, partition: str | None) -> Artifact | None:
        return current_artifact(self.store, asset, partition)

    def load_input(self, context: InputContext) -> Artifact | dict[str, Artifact]:
        asset = self._asset_name(context)
        metadata = context.definition_metadata or {}
        if metadata.get("all_partitions"):
            refs, missing = partition_artifacts(self.store, asset, sorted(context.asset_partition_keys))
            if missing:
                context.log.warning(f"{asset}: {len(missing)} partition(s) not materialized yet, left out: {missing[:20]}")
            return refs
        partition = context.asset_partition_key if context.has_asset_partitions else None
        ref = self._load_one(asset, partition)
        if ref is None and metadata.get("optional"):
            return None
        if ref is None:
            raise FileNotFoundError(
                f"{asset}[{partition or '-'}] has not been materialized yet: materialize it first "
                f"(no reference at {redact_url(self.store.ref_path(asset, partition))})"
            )
        return ref
