"""``modelrec recommend PATH``: the zoo ranked for a folder of images that is not in the catalog.

The folder is encoded as the ``dataset_tokens`` asset encodes a dataset (same encoder settings, same
:func:`~ml_core.images.write_dataset_tokens`), and ranked as ``model_recommendations`` ranks one
(same :func:`~ml_core.ranking.recommend`), from what the graph last materialized in the artifact
store (the ``_refs`` pointers: the trained ranker, each model's embedding and source sample, the
ground truth). Nothing is written to the store. With labels, the two-stage mode runs LogME
(:func:`~ml_core.ground_truth.scored_outcome`, the code of ``transferability_scores``) on the shortlist
and ranks it by LogME above the rest; for a catalog dataset, a model whose features of the scored images
are already in the store (:mod:`ml_core.ground_truth.features`) reads them: no forward pass. Each model's costs come from its ``model_costs``
artifact (unknown when it has none); :func:`apply_budget` cuts the ranking to a budget.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from upath import UPath

from assets.shared.artifacts import embedding_tokens, partition_artifacts, source_descriptors
from assets.shared.loaders import TOKENS_DIR
from ml_core.ground_truth import (
    TransferabilityConfig,
    load_index,
    published_model_features,
    scored_outcome,
    scoring_images,
    transferability_outcome,
    zoo_cells,
)
from ml_core.images import (
    DatasetTokens,
    ImageFolderIndex,
    TokenWriterConfig,
    load_image_encoder,
    read_dataset_tokens,
    scan_any_image_folder,
    write_dataset_tokens,
)
from ml_core.progress import progress
from ml_core.ranking import RecommendationConfig, recommend
from ml_core.ranking.pareto import BudgetFilter, with_costs, within_budget
from ml_core.ranking.shortlist import rerank_shortlist
from pipelines.readers import materialized

logger = logging.getLogger(__name__)


class NotMaterializedError(FileNotFoundError):
    """What a recommendation reads is not in the artifact store; the message says what to run."""


@dataclass
class FolderRecommendation:
    """The ranked zoo (``table``: rank, model, score, shortlist, and logme / accuracy when known) and what
    was read: the folder's layout, its images and classes, the encoder, the seconds spent."""

    path: Path
    dataset: str | None  # the catalog's partition key when the folder is a catalog dataset
    labelled: bool
    n_images: int
    classes: list[str]
    encoder: str
    table: pd.DataFrame
    tokens: DatasetTokens  # the folder's dataset tokens, as the dataset_tokens asset would write them
    two_stage: bool = False
    problems: dict[str, str] = field(default_factory=dict)  # models LogME could not score, and why
    seconds: dict[str, float] = field(default_factory=dict)
    budget: dict[str, Any] | None = None  # what apply_budget kept and filtered out

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        rows = self.table.head(top) if top else self.table
        records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                   for r in rows.to_dict(orient="records")]
        return {"path": str(self.path), "dataset": self.dataset, "labelled": self.labelled,
                "n_images": self.n_images, "n_classes": len(self.classes), "encoder": self.encoder,
                "two_stage": self.two_stage, "n_models": len(self.table), "models": records,
                "problems": self.problems, "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "budget": self.budget}


def _catalog_key(path: Path, catalog: Any) -> str | None:
    """The partition key of the catalog dataset at ``path``, if it is one."""
    resolved = path.resolve()
    return next((e.key for e in catalog.entries() if Path(e.path).resolve() == resolved), None)


def _inputs(store: Any, zoo: Any) -> tuple[Any, Any, dict, dict]:
    """The trained ranker, the ground truth, and each zoo model's embedding and source-sample artifacts,
    as the last materialization left them (what ``model_recommendations`` would receive)."""
    try:
        ranker = materialized(store, "ranking_transformer")
        ranks = materialized(store, "ground_truth_ranks")
    except FileNotFoundError as error:
        raise NotMaterializedError(str(error)) from error
    keys = [e.key for e in zoo.entries()]
    embeddings, missing = partition_artifacts(store, "model_embeddings", keys)
    if not embeddings:
        raise NotMaterializedError(f"model_embeddings: no model of the zoo ({len(keys)} checkpoints) is embedded in "
                                   f"{store.root}: run `modelrec demo` (or `modelrec run`) first")
    if missing:
        logger.warning("%d zoo model(s) not embedded yet, left out: %s", len(missing), ", ".join(missing[:10]))
    sources, _ = partition_artifacts(store, "model_source_tokens", sorted(embeddings))
    return ranker, ranks, embeddings, sources


def _encode(index: ImageFolderIndex, labelled: bool, spec: Any) -> tuple[Any, str]:
    """The folder's dataset tokens, written as the ``dataset_tokens`` asset writes them (a flat folder
    is one class), in a temporary folder; and the encoder's name."""
    config = TokenWriterConfig() if labelled else TokenWriterConfig(min_classes=1)
    encoder = load_image_encoder(spec)
    with tempfile.TemporaryDirectory(prefix="modelrec-recommend-") as tmp:
        out = UPath(tmp) / TOKENS_DIR
        write_dataset_tokens(index, encoder, out, config)
        tokens = read_dataset_tokens(out)
    return tokens, str(encoder.describe().get("architecture", "?"))


def _logme_on_shortlist(index: ImageFolderIndex, zoo: Any, store: Any, models: list[str], short: list[int],
                        dataset: str | None = None) -> tuple[np.ndarray, dict[str, str], int]:
    """LogME ``(N,)`` of the shortlisted models on the folder's labelled images (NaN elsewhere and for a
    model that could not run, listed with its reason), and how many read features already in the store.

    For a catalog dataset (``dataset``: its key) in the dataset layout, a model whose features of these
    images ``transferability_scores`` (or a budgeted recommendation) already computed reads them from the
    store: no forward pass. Any other model or folder runs its forward pass in memory: nothing is written."""
    config = TransferabilityConfig()
    decoded: list[Any] = []

    def images() -> Any:  # decoded on the first forward pass only
        if not decoded:
            decoded.append(scoring_images(load_index(index), config.max_images))
        return decoded[0]

    shared = dataset is not None and index.split == config.split
    fingerprint = store.fingerprints.folder(index.dataset_dir) if shared else None
    cells = {c.key: c for c in zoo_cells(zoo.entries(), store.fingerprints.file_sha256)}
    logme = np.full(len(models), np.nan)
    problems: dict[str, str] = {}
    reused = 0
    for j in progress(short, desc="LogME on the shortlist", unit="model"):
        cell = cells.get(models[j])
        if cell is None or cell.card is None:
            problems[models[j]] = cell.problem if cell else "no longer in the zoo"
            continue
        stored = None if fingerprint is None else published_model_features(
            store, cell, dataset=dataset, dataset_fingerprint=fingerprint, selection=config.selection())
        if stored is not None:
            reused += 1
            outcome = scored_outcome(lambda stored=stored: stored, config)
        else:
            outcome = transferability_outcome(cell, images, config)
        if "error" in outcome:
            problems[models[j]] = outcome["error"]
        else:
            logme[j] = outcome["logme"]
    return logme, problems, reused


def recommend_folder(path: Path, resources: dict[str, Any], *, two_stage: bool = False) -> FolderRecommendation:
    """Rank the zoo for the images under ``path`` (see the module's doc). Raises
    :class:`~ml_core.images.ImageFolderError` for a missing, empty or image-less folder,
    :class:`NotMaterializedError` when the graph was never materialized, ValueError for ``two_stage``
    on a folder without labels."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    store, zoo, catalog = resources["store"], resources["zoo"], resources["catalog"]
    path = Path(path).expanduser()
    index, labelled = scan_any_image_folder(path, catalog.split)
    if two_stage and not labelled:
        raise ValueError(f"{path}: --two-stage needs labels (class folders: <folder>/<class>/<image>); "
                         f"this folder has {len(index.classes)} class(es)")
    ranker, ranks, embeddings, sources = _inputs(store, zoo)
    seconds["read"] = time.perf_counter() - start
    spec = resources["image_encoder"].spec(device=resources["compute"].torch_device())
    tokens, encoder = _encode(index, labelled, spec)
    seconds["encode"] = time.perf_counter() - start - seconds["read"]
    models = sorted(embeddings)
    model_tokens = embedding_tokens(embeddings)
    dataset = _catalog_key(path, catalog)
    # a folder that is not a catalog dataset gets a key no partition has, so no dataset's results are shown for it
    result = recommend(ranker.load(), dataset or f"<{path.name}>", tokens, models,
                       np.stack([model_tokens[m] for m in models]), ranks.load(), RecommendationConfig(),
                       source_descriptors(sources, models))
    table = result.table
    seconds["rank"] = time.perf_counter() - start - seconds["read"] - seconds["encode"]
    problems: dict[str, str] = {}
    if two_stage:
        by_model = table.set_index("model")
        short = [models.index(m) for m in result.summary["shortlist"]]
        logme, problems, reused = _logme_on_shortlist(index, zoo, store, models, short, dataset)
        logger.info("two-stage: %d of %d shortlisted models read their features from the store", reused, len(short))
        first = by_model.loc[models, "score"].to_numpy()
        scored = [j for j in short if not np.isnan(logme[j])]  # a model LogME could not score drops below
        scores = rerank_shortlist(first, logme, np.array(scored, dtype=int))
        table = by_model.loc[models].reset_index().rename(columns={"score": "ranker_score", "rank": "ranker_rank"})
        table.insert(2, "score", scores)
        table["logme"] = logme
        table = table.sort_values(["score", "model"], ascending=[False, True], kind="stable").reset_index(drop=True)
        table.insert(0, "rank", np.arange(len(table)))
        table = table.drop(columns=["ranker_rank"])
        seconds["logme"] = time.perf_counter() - start - sum(seconds.values())
    costs, _ = partition_artifacts(store, "model_costs", models)
    table, _ = with_costs(table, {m: a.load().columns() for m, a in costs.items()})
    seconds["total"] = time.perf_counter() - start
    return FolderRecommendation(path, dataset, labelled, index.n_images, list(index.classes), encoder, table, tokens,
                                two_stage, problems, seconds)


def apply_budget(result: FolderRecommendation, *, max_params: float | None = None,
                 max_latency_ms: float | None = None) -> BudgetFilter | None:
    """Cut ``result``'s ranking to the models within ``max_params`` parameters and ``max_latency_ms``
    per image at batch 1 (:func:`~ml_core.ranking.pareto.within_budget`; a model of unknown cost is
    excluded); the ranks stay those of the whole zoo. None (and nothing cut) without a limit."""
    if max_params is None and max_latency_ms is None:
        return None
    budget = within_budget(result.table, max_params=max_params, max_latency_ms=max_latency_ms)
    result.table = budget.table
    result.budget = budget.to_dict()
    return budget


def budget_report(budget: BudgetFilter) -> list[str]:
    """What a budget kept and filtered out, and why, one line per reason."""
    limits = ", ".join(f"{'parameters' if c == 'params' else 'latency per image at batch 1 (ms)'} <= {v:g}"
                       for c, v in budget.limits.items())
    lines = [f"budget ({limits}): {len(budget.table)} model(s) kept, {budget.n_filtered} filtered out"]
    for flag, models in budget.over.items():
        if models:
            lines.append(f"  {len(models)} over {flag}: {', '.join(models[:10])}{' ...' if len(models) > 10 else ''}")
    if budget.unknown:
        names = ", ".join(f"{m} (no {'/'.join(c)})" for m, c in list(budget.unknown.items())[:10])
        lines.append(f"  {len(budget.unknown)} excluded because their cost is unknown (materialize model_costs; a "
                     f"network that cannot be built has no latency): {names}")
    return lines
