"""Results that flow back: fine-tune results a team reports after the fact, kept as a versioned history.

A team fine-tunes the shortlist and drops the results in a folder as files in the performance-table
formats (:mod:`ml_core.ground_truth.tables`: JSON ``{dataset: [records]}`` or a CSV with dataset, model
and accuracy columns). :func:`ingest_results` reads each file not seen before (by the SHA-256 of its
bytes), validates every row and appends the accepted rows to the history, one row per result with the
file it came from, that file's content hash and when it was added:

* a file is taken whole or refused whole: one that cannot be parsed, has a row without an accuracy,
  an accuracy out of range (negative, above 100, or fractions mixed into a percent file: the table
  parser's rules, so a file is in [0, 1] or in [0, 100] throughout), names a model the zoo does not have
  or a dataset that is neither in the catalog nor in the performance table, is refused with one line
  naming the file and the first problem, and nothing of it is appended;
* a file whose content was ingested before (same hash, whatever its name) is not appended again;
* rows are never merged or dropped: two results for one (dataset, model) pair, from the table or
  from earlier files, are all kept; :func:`merge_history` gives the pair their mean, and
  :func:`result_conflicts` lists the pairs whose values differ, with every value and where it came from.

Pure functions: no Dagster, no file system beyond the bytes the caller passes in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from ml_core.ground_truth.tables import (
    PerformanceTable,
    PerformanceTableError,
    normalize_name,
    read_performance_table,
)

RESULT_SUFFIXES = (".csv", ".json")
HISTORY_COLUMNS = ("dataset", "model", "accuracy", "source_file", "source_sha256", "ingestion", "ingested_at")
TABLE_SOURCE = "performance table"
_MAX_LISTED = 5


def empty_history() -> pd.DataFrame:
    """A history with no row (the typed columns of :data:`HISTORY_COLUMNS`)."""
    return pd.DataFrame({
        "dataset": pd.Series(dtype=object), "model": pd.Series(dtype=object), "accuracy": pd.Series(dtype=np.float64),
        "source_file": pd.Series(dtype=object), "source_sha256": pd.Series(dtype=object),
        "ingestion": pd.Series(dtype=np.int64), "ingested_at": pd.Series(dtype="datetime64[ns, UTC]"),
    })


def as_history(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the history's columns and dtypes (e.g. as read back from parquet, whichever string and
    time resolutions the reader chose)."""
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"a result history lacks the columns {missing}")
    out = pd.DataFrame({c: frame[c].astype(object).map(str).astype(object) for c in
                        ("dataset", "model", "source_file", "source_sha256")})
    out["accuracy"] = frame["accuracy"].to_numpy(dtype=np.float64)
    out["ingestion"] = frame["ingestion"].to_numpy(dtype=np.int64)
    out["ingested_at"] = pd.to_datetime(frame["ingested_at"], utc=True).astype("datetime64[ns, UTC]")
    return out[list(HISTORY_COLUMNS)].reset_index(drop=True)


def history_content_hash(history: pd.DataFrame) -> str:
    """The content hash of a history (its rows, in order): the data version of the ``result_history`` asset."""
    frame = as_history(history)
    frame["ingested_at"] = frame["ingested_at"].astype("int64")
    digest = hashlib.sha256(",".join(HISTORY_COLUMNS).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ResultFile:
    """One file of the results folder: its name there and the bytes read (hashed and parsed as read)."""

    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class KnownNames:
    """What a result may name: the zoo's models and the datasets of the catalog or the performance table,
    each as ``{name: canonical name}`` (names and partition keys map to the zoo's / catalog's spelling)."""

    models: dict[str, str]
    datasets: dict[str, str]

    @classmethod
    def build(cls, models: Mapping[str, str], datasets: Mapping[str, str], table_datasets: Iterable[str] = ()
              ) -> KnownNames:
        """``models`` / ``datasets``: ``{name: partition key}``; ``table_datasets``: the table's dataset names."""
        def lookup(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
            out: dict[str, str] = {}
            for alias, name in pairs:
                out.setdefault(normalize_name(alias), name)
            return out

        model_map = lookup([(n, n) for n in models] + [(k, n) for n, k in models.items()])
        dataset_map = lookup([(n, n) for n in datasets] + [(k, n) for n, k in datasets.items()]
                             + [(n, n) for n in table_datasets])
        return cls(model_map, dataset_map)

    def digest(self) -> str:
        """A hash of every accepted name (what validation depends on)."""
        return hashlib.sha256(repr((sorted(self.models.items()), sorted(self.datasets.items()))).encode()).hexdigest()


@dataclass(frozen=True)
class Refusal:
    """A file refused whole: its name, its content hash and the one-line reason (naming the file)."""

    file: str
    sha256: str
    reason: str


@dataclass(frozen=True)
class Ingestion:
    """What one ingestion did: the new ``history`` (the previous one plus ``added``), the files taken
    (``accepted``: name -> rows), refused (:class:`Refusal`) and skipped as already ingested
    (``duplicates``: name -> the name its content was first ingested under, or "" if in this batch)."""

    history: pd.DataFrame
    added: pd.DataFrame
    accepted: dict[str, int] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _rows(pairs: Sequence[str], n: int) -> str:
    shown = ", ".join(repr(p) for p in pairs[:_MAX_LISTED])
    return shown + (f" and {n - _MAX_LISTED} more" if n > _MAX_LISTED else "")


def validate_result_file(file: ResultFile, known: KnownNames, *, source: str | None = None) -> pd.DataFrame:
    """The rows of one results file as ``dataset, model, accuracy`` (fractions; names in the zoo's and
    catalog's spelling), or :class:`PerformanceTableError` with one line naming the file (``source``,
    default its name) and the first problem found. See the module's doc for the rules."""
    source = source or file.name
    suffix = PurePath(file.name).suffix.lower()
    if suffix not in RESULT_SUFFIXES:
        raise PerformanceTableError(f"{source}: not a results file ({suffix or 'no suffix'}; expected .csv or .json)")
    table = read_performance_table(file.data, suffix, source=source)
    report = table.report
    if report.dropped_missing:
        raise PerformanceTableError(
            f"{source}: {len(report.dropped_missing)} row(s) without an accuracy, e.g. "
            f"{_rows([f'{d}/{m}' for d, m in report.dropped_missing], len(report.dropped_missing))}"
        )
    frame = table.frame
    for column, names, what in (("model", known.models, "a model the zoo does not have"),
                                ("dataset", known.datasets, "a dataset neither in the catalog nor in the performance table")):
        unknown = sorted({n for n in frame[column] if normalize_name(n) not in names})
        if unknown:
            raise PerformanceTableError(f"{source}: unknown {column} {_rows(unknown, len(unknown))} ({what})")
    return pd.DataFrame({
        "dataset": [known.datasets[normalize_name(n)] for n in frame["dataset"]],
        "model": [known.models[normalize_name(n)] for n in frame["model"]],
        "accuracy": frame["accuracy"].to_numpy(dtype=np.float64),
    })


def ingest_results(
    history: pd.DataFrame,
    files: Sequence[ResultFile],
    known: KnownNames,
    *,
    now: pd.Timestamp,
    sources: Mapping[str, str] | None = None,
) -> Ingestion:
    """Append the rows of every new, valid file of ``files`` to ``history`` (see the module's doc).

    ``now``: the ingestion's time (UTC), recorded on each row added; ``sources``: ``{file name: what
    to call it in a refusal}`` (e.g. its path; default its name). The previous rows are kept as they are.
    """
    stamp = pd.Timestamp(now)
    stamp = stamp.tz_convert("UTC") if stamp.tzinfo is not None else stamp.tz_localize("UTC")
    seen = dict(zip(history["source_sha256"], history["source_file"], strict=True))
    ingestion = int(history["ingestion"].max()) + 1 if len(history) else 1
    parts: list[pd.DataFrame] = []
    accepted: dict[str, int] = {}
    refused: list[Refusal] = []
    duplicates: dict[str, str] = {}
    notes: list[str] = []
    for file in sorted(files, key=lambda f: f.name):
        sha = file.sha256
        if sha in seen:
            duplicates[file.name] = seen[sha]
            continue
        try:
            rows = validate_result_file(file, known, source=(sources or {}).get(file.name))
        except PerformanceTableError as error:
            refused.append(Refusal(file.name, sha, _one_line(str(error))))
            continue
        seen[sha] = file.name
        accepted[file.name] = len(rows)
        parts.append(rows.assign(source_file=file.name, source_sha256=sha, ingestion=ingestion, ingested_at=stamp))
    added = as_history(pd.concat(parts, ignore_index=True)) if parts else empty_history()
    history = as_history(history)
    new = as_history(pd.concat([history, added], ignore_index=True)) if len(added) else history
    if duplicates:
        notes.append(f"already ingested (same content), not appended again: {duplicates}")
    return Ingestion(new.reset_index(drop=True), added, accepted, refused, duplicates, notes)


def _table_rows(table: PerformanceTable) -> pd.DataFrame:
    return table.frame.assign(source=TABLE_SOURCE)


def _history_rows(table: PerformanceTable, history: pd.DataFrame) -> pd.DataFrame:
    """The history's rows with the table's spelling of each name it shares with the table."""
    spell_dataset = {normalize_name(d): d for d in table.datasets}
    spell_model = {normalize_name(m): m for m in table.models}
    return pd.DataFrame({
        "dataset": [spell_dataset.get(normalize_name(d), d) for d in history["dataset"]],
        "model": [spell_model.get(normalize_name(m), m) for m in history["model"]],
        "accuracy": history["accuracy"].to_numpy(dtype=np.float64),
        "model_type": None,
        "trained_on_dataset": None,
        "source": history["source_file"].to_numpy(dtype=object),
    })


def result_conflicts(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The (dataset, model) pairs of ``rows`` (``dataset, model, accuracy, source``) reported with more
    than one accuracy: ``{"dataset", "model", "values": [[source, accuracy], ...], "mean"}``, each value
    rounded to 6 digits, in the order the rows came."""
    out = []
    for (dataset, model), group in rows.groupby(["dataset", "model"], sort=True):
        if group["accuracy"].round(9).nunique() > 1:
            out.append({
                "dataset": dataset, "model": model,
                "values": [[str(s), round(float(a), 6)] for s, a in zip(group["source"], group["accuracy"], strict=True)],
                "mean": round(float(group["accuracy"].mean()), 6),
            })
    return out


def merge_history(table: PerformanceTable, history: pd.DataFrame) -> tuple[PerformanceTable, list[dict[str, Any]]]:
    """The performance table with the history's results added: every (dataset, model) pair's accuracy is
    the mean of all its rows, the table's and the results' (each kept, none preferred). Returns the merged
    table (its report's notes say what was added) and :func:`result_conflicts` of the rows."""
    if history is None or history.empty:
        return table, []
    rows = pd.concat([_table_rows(table), _history_rows(table, history)], ignore_index=True)
    conflicts = result_conflicts(rows)
    merged = PerformanceTable.from_frame(rows.drop(columns="source"), source=table.report.source)
    n_files = history["source_sha256"].nunique()
    notes = [*table.report.notes,
             f"added {len(history)} reported result(s) from {n_files} file(s) of the result history; "
             f"{len(conflicts)} (dataset, model) pair(s) with differing values averaged"]
    return PerformanceTable(merged.frame, replace(table.report, n_rows_kept=len(merged.frame), notes=tuple(notes))), conflicts


def growth_tables(history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How the history grew: ``(per_dataset, per_ingestion)``.

    ``per_dataset``: ``dataset, rows, files, last_added``; ``per_ingestion``: ``ingestion, time, files,
    rows_added, total_rows`` (one row per ingestion that added something)."""
    if history.empty:
        return (pd.DataFrame(columns=["dataset", "rows", "files", "last_added"]),
                pd.DataFrame(columns=["ingestion", "time", "files", "rows_added", "total_rows"]))
    per_dataset = history.groupby("dataset", sort=True).agg(
        rows=("model", "size"), files=("source_sha256", "nunique"), last_added=("ingested_at", "max"),
    ).reset_index()
    per_ingestion = history.groupby("ingestion", sort=True).agg(
        time=("ingested_at", "first"), files=("source_file", lambda s: ", ".join(dict.fromkeys(s))),
        rows_added=("model", "size"),
    ).reset_index()
    per_ingestion["total_rows"] = per_ingestion["rows_added"].cumsum()
    for frame, column in ((per_dataset, "last_added"), (per_ingestion, "time")):
        frame[column] = frame[column].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    return per_dataset, per_ingestion


def growth_plot(history: pd.DataFrame, handle: Any) -> None:
    """PNG into the binary file ``handle``: the history's rows over time (one step per ingestion, total
    and per dataset) beside the rows per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    if history.empty:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no result yet", ha="center", va="center", transform=ax.transAxes)
    else:
        times = history.groupby("ingestion")["ingested_at"].first().dt.tz_localize(None)
        total = history.groupby("ingestion").size().cumsum()
        left.step(times.to_numpy(), total.to_numpy(), where="post", marker="o", label="all datasets", color="black")
        for dataset, group in history.groupby("dataset", sort=True):
            counts = group.groupby("ingestion").size().reindex(times.index, fill_value=0).cumsum()
            left.step(times.to_numpy(), counts.to_numpy(), where="post", alpha=0.7, label=str(dataset))
        left.legend(fontsize=7, loc="upper left")
        per_dataset = history.groupby("dataset", sort=True).size()
        right.barh(per_dataset.index.astype(str), per_dataset.to_numpy())
        fig.autofmt_xdate()
    left.set_title("result rows over time")
    left.set_ylabel("rows")
    right.set_title("result rows per dataset")
    fig.tight_layout()
    fig.savefig(handle, format="png", dpi=80)
    plt.close(fig)
