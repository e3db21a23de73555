"""Asset ``result_history``: fine-tune results reported after the fact, validated and appended to a history.

The ``results`` folder holds files in the performance-table formats (``*.csv``, ``*.json``), observed as
the source asset ``result_files``; the ``results_sensor`` requests a run when one appears or changes. Only
*settled* files are read (not modified for the folder's ``settle_seconds``): one still being written, or
changed while it was read, is left for the next run, never read half-way. A run reads every file whose content
(SHA-256) is not in the history yet, validates it whole (:func:`ml_core.ground_truth.ingest_results`:
known model, known dataset, accuracy in range; a bad file is refused with one line naming it, and
nothing of it is appended) and publishes the previous history plus the accepted rows (parquet, each row
with its file, the file's hash and the ingestion's time). ``ground_truth_ranks`` reads it beside the
performance table. Nothing here retrains: the ranker learns the new results when it is retrained.

Caching: the history's cache key hashes the previous history and the new files' hashes (and the names
a file may use). With no new file, the run finds the previous artifact itself (the key it was published
under): a cache hit with the same data version, so an unchanged folder never moves the ground truth.
"""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset
from upath import UPath

from assets.shared.artifacts import current_artifact, materialize_asset, png_markdown
from assets.shared.loaders import HISTORY_FILE, HISTORY_PLOT_FILE, write_parquet
from ml_core.ground_truth import (
    KnownNames,
    PerformanceTableError,
    empty_history,
    growth_plot,
    growth_tables,
    history_content_hash,
    ingest_results,
    result_conflicts,
)
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from resources.performance_table import PerformanceTableResource
from resources.results_folder import FileChangedWhileRead, ResultsFolder

CODE_VERSION = "1"
ASSET = "result_history"


def _known_names(context: AssetExecutionContext, zoo: ModelZoo, catalog: DatasetCatalog,
                 performance_table: PerformanceTableResource) -> KnownNames:
    table_datasets: list[str] = []
    if performance_table.path:
        try:
            table_datasets = performance_table.load().datasets
        except PerformanceTableError as error:  # ground_truth_ranks fails on it, naming the problem
            context.log.warning(f"results are checked against the catalog only: {error}")
    return KnownNames.build({e.name: e.key for e in zoo.entries()}, {e.name: e.key for e in catalog.entries()},
                            table_datasets)


def _markdown(frame: pd.DataFrame, empty: str = "none") -> MetadataValue:
    return MetadataValue.md(frame.to_markdown(index=False) if len(frame) else empty)


def _conflicts_markdown(conflicts: list[dict]) -> MetadataValue:
    if not conflicts:
        return MetadataValue.md("none")
    rows = [{"dataset": c["dataset"], "model": c["model"],
             "values": "; ".join(f"{v:.4f} ({source})" for source, v in c["values"]), "mean (used)": round(c["mean"], 4)}
            for c in conflicts]
    return MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False))


@asset(
    code_version=CODE_VERSION,
    group_name="ground_truth",
    deps=["result_files"],  # the source asset of the results folder (assets/result_files.py)
    kinds={"pandas", "parquet"},
    description="Fine-tune results reported later (the results folder's *.csv / *.json), validated file by file "
    "and appended to a versioned history that ground_truth_ranks averages in; a malformed file is refused whole.",
)
def result_history(
    context: AssetExecutionContext,
    store: ArtifactStore,
    results: ResultsFolder,
    zoo: ModelZoo,
    catalog: DatasetCatalog,
    performance_table: PerformanceTableResource,
):
    previous = current_artifact(store, ASSET, None)
    history = previous.load() if previous is not None else empty_history()
    ingested = dict(zip(history["source_sha256"], history["source_file"], strict=True))  # hash -> first file
    for path in results.unsettled():
        context.log.info(f"{path}: modified less than {results.settle_seconds:g} s ago (still being written?): "
                         "left for the next run")
    paths = {p.name: p for p in results.files()}
    hashes = {name: store.fingerprints.file_sha256(path) for name, path in paths.items()}
    files = {}  # the new files, read once now: what is hashed is what is parsed
    for name in sorted(n for n, h in hashes.items() if h not in ingested):
        try:
            files[name] = results.read(paths[name])
        except (FileChangedWhileRead, FileNotFoundError) as error:
            context.log.warning(f"{error}: left for the next run")
    candidates = {name: file.sha256 for name, file in files.items() if file.sha256 not in ingested}
    already = {name: ingested[h] for name, h in hashes.items() if h in ingested}  # in the history: not read again
    known = _known_names(context, zoo, catalog, performance_table)
    if previous is not None and not candidates and not previous.summary().get("refused"):
        manifest = previous.manifest()  # nothing new: the previous artifact's own key (a cache hit)
        config, inputs = manifest.get("config", {}), manifest.get("inputs", {})
    else:
        config = {}
        inputs = {"previous": previous.content_hash if previous is not None else "none", "names": known.digest()}
        inputs |= {f"file:{name}": h for name, h in sorted(candidates.items())}

    def build(directory: UPath) -> tuple[str, dict]:
        ingestion = ingest_results(history, [files[name] for name in sorted(candidates)], known, now=pd.Timestamp.now(tz="UTC"),
                                   sources={name: str(path) for name, path in paths.items()})
        write_parquet(ingestion.history, directory / HISTORY_FILE)
        with (directory / HISTORY_PLOT_FILE).open("wb") as handle:
            growth_plot(ingestion.history, handle)
        new = ingestion.history
        return history_content_hash(new), {
            "results_folder": str(results.root),
            "n_rows": len(new),
            "n_files": int(new["source_sha256"].nunique()),
            "rows_added": len(ingestion.added),
            "accepted": ingestion.accepted,
            "refused": [{"file": r.file, "sha256": r.sha256, "reason": r.reason} for r in ingestion.refused],
            "already_ingested": ingestion.duplicates,
            "conflicts": result_conflicts(new.assign(source=new["source_file"])),
        }

    result = materialize_asset(context, store, config=config, inputs=inputs, build=build)
    s = result.summary
    for refusal in s.get("refused", []):
        context.log.warning(f"refused, nothing appended: {refusal['reason']}")
    added = {} if result.cache_hit else s.get("accepted", {})  # a cache hit appended nothing
    if added:
        context.log.info(f"appended {s['rows_added']} result row(s) from {sorted(added)}")
    already |= {} if result.cache_hit else s.get("already_ingested", {})
    frame = result.artifact(store).load()
    per_dataset, per_ingestion = growth_tables(frame)
    yield result.output({
        "results_folder": MetadataValue.path(s.get("results_folder", str(results.root))),
        "n_rows": s["n_rows"],
        "n_files": s["n_files"],
        "rows_added": 0 if result.cache_hit else s["rows_added"],
        "accepted_files": MetadataValue.md("\n".join(f"- {name}: {n} row(s)" for name, n in added.items()) or "none"),
        "refused_files": MetadataValue.md("\n".join(f"- {r['reason']}" for r in s.get("refused", [])) or "none"),
        "already_ingested": MetadataValue.md(
            "\n".join(f"- {name}" + (f" (same content as {first})" if first != name else "")
                      for name, first in sorted(already.items())) or "none"),
        "rows_per_dataset": _markdown(per_dataset),
        "growth": _markdown(per_ingestion),
        "growth_plot": png_markdown(result.ref.directory(store) / HISTORY_PLOT_FILE, "result history growth"),
        "conflicts": _conflicts_markdown(s.get("conflicts", [])),
    })
