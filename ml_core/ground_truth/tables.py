"""The performance table a user brings: fine-tune accuracy of each model on each dataset.

Two on-disk formats are read by :func:`load_performance_table`:

- JSON ``{dataset: [{"model_name": str, "accuracy": float, "model_type": str,
  "trained_on_dataset": str}, ...]}`` (``model_type`` and ``trained_on_dataset`` optional, other keys
  ignored; ``accuracy`` null or NaN means "not measured");
- CSV (or TSV) with a dataset, a model and an accuracy column, found case-insensitively by their
  usual names (see ``_DATASET_KEYS`` etc.) or named by the caller.

``trained_on_dataset`` comes in two forms, both in the wild: the name of the dataset the model was
trained on, or a flag saying whether it was trained on the row's own dataset (JSON ``true`` / ``false``,
or ``true`` / ``false`` / ``yes`` / ``no`` in a CSV). A flag is read as the row's dataset (true) or
none (false), so both forms mean the same thing downstream.

Whatever comes in, a :class:`PerformanceTable` holds accuracy as a FRACTION in [0, 1], one row per
(dataset, model), and its :class:`LoadReport` lists every normalisation applied on the way.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from upath import UPath

from ml_core.artifacts import as_upath

logger = logging.getLogger(__name__)

COLUMNS = ("dataset", "model", "accuracy", "model_type", "trained_on_dataset")
OPTIONAL_COLUMNS = ("model_type", "trained_on_dataset")
#: joins the columns that together identify a model, e.g. PARC's ``resnet50__imagenet``.
MODEL_NAME_SEPARATOR = "__"

# CSV header names per role, compared after lower-casing and removing every non-alphanumeric
# character ("Target Dataset" -> "targetdataset"). The first match in this order wins.
_DATASET_KEYS = ("dataset", "datasetname", "targetdataset", "target", "targetname", "task")
_MODEL_KEYS = ("model", "modelname", "checkpoint")
_ARCHITECTURE_KEYS = ("architecture", "arch", "backbone")
_SOURCE_KEYS = (
    "sourcedataset", "source", "trainedondataset", "pretraineddataset", "pretrainingdataset", "pretrainedon",
)
_ACCURACY_KEYS = (
    "accuracy", "acc", "finetuneaccuracy", "finetuneacc", "oracle", "top1", "top1accuracy", "top1acc",
    "testaccuracy", "testacc",
)
_MODEL_TYPE_KEYS = ("modeltype", "type", "family", *_ARCHITECTURE_KEYS)
_TRAINED_ON_KEYS = ("trainedondataset", *_SOURCE_KEYS)

TABLE_SUFFIXES = (".json", ".csv", ".tsv")

_SEPARATORS = re.compile(r"[\s\-./\\]+")
_MAX_LISTED = 5


class PerformanceTableError(ValueError):
    """A performance table that cannot be used; the message starts with the file it came from."""


def normalize_name(name: str) -> str:
    """The key used to match names across the table, the model zoo and the dataset catalog.

    Unicode NFKC, surrounding whitespace stripped, case-folded, and every run of whitespace,
    ``-``, ``.``, ``/`` or ``\\`` turned into one ``_`` (leading/trailing ones removed). Underscores
    and all other characters are kept, so names that differ by more than spelling of separators
    stay distinct: ``"ResNet-50"``, ``"resnet 50"`` and ``"resnet_50"`` match, ``"resnet50"`` does
    not; ``"Oxford Pets"`` matches ``"oxford_pets"``; ``"a__b"`` (a joined PARC name) stays
    different from ``"a_b"``.
    """
    text = unicodedata.normalize("NFKC", str(name)).strip().casefold()
    return _SEPARATORS.sub("_", text).strip("_")


class PerformanceRecord(BaseModel):
    """One entry of the JSON format (unknown keys are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model_name: str
    accuracy: float | None
    model_type: str | None = None
    trained_on_dataset: str | bool | None = None  # a source dataset's name, or a flag: see the module's doc

    @field_validator("accuracy", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON true would otherwise become 1.0 (a perfect score)
            raise ValueError(f"a boolean ({str(value).lower()}) is not an accuracy")
        return value


@dataclass(frozen=True)
class LoadReport:
    """What loading did to the table, for logs and asset metadata.

    ``columns`` maps each role (dataset, model, accuracy, ...) to the source column(s) used.
    ``dropped_missing`` lists the (dataset, model) rows dropped for having no accuracy,
    ``averaged_duplicates`` the (dataset, model, n_rows) averaged into one, ``name_collisions``
    the groups of distinct names equal after :func:`normalize_name`. ``notes`` says all of it in
    sentences.
    """

    source: str = "<memory>"
    n_rows_read: int = 0
    n_rows_kept: int = 0
    columns: dict[str, str] = field(default_factory=dict)
    percent_rescaled: bool = False
    dropped_missing: tuple[tuple[str, str], ...] = ()
    averaged_duplicates: tuple[tuple[str, str, int], ...] = ()
    name_collisions: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class PerformanceTable:
    """Accuracy of models on datasets, one row per (dataset, model).

    ``frame`` columns: ``dataset`` (str), ``model`` (str), ``accuracy`` (float, fraction in [0, 1]),
    ``model_type`` and ``trained_on_dataset`` (object: str or None). Build one with
    :func:`load_performance_table` or :meth:`from_frame`, which normalise; the constructor only
    checks.
    """

    frame: pd.DataFrame
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self) -> None:
        source = self.report.source
        missing = [column for column in COLUMNS if column not in self.frame.columns]
        if missing:
            raise PerformanceTableError(f"{source}: frame lacks columns {missing}")
        accuracy = self.frame["accuracy"].to_numpy(dtype=np.float64)
        if not np.all((accuracy >= 0.0) & (accuracy <= 1.0)):  # also rejects NaN
            raise PerformanceTableError(f"{source}: accuracy must be a fraction in [0, 1] with no NaN")
        if self.frame.duplicated(["dataset", "model"]).any():
            raise PerformanceTableError(f"{source}: duplicate (dataset, model) rows")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, source: str = "<frame>") -> PerformanceTable:
        """Normalise a frame with ``dataset, model, accuracy`` (+ optional) columns like a file."""
        missing = [column for column in ("dataset", "model", "accuracy") if column not in frame.columns]
        if missing:
            raise PerformanceTableError(f"{source}: frame lacks columns {missing}")
        raw = frame.copy()
        for column in OPTIONAL_COLUMNS:
            if column not in raw.columns:
                raw[column] = None
        raw["row_ref"] = [f"row {i}" for i in range(len(raw))]
        raw["accuracy"] = _parse_accuracy(raw["accuracy"], raw, source)
        return _normalise(raw, source=source, columns={c: c for c in COLUMNS if c in frame.columns})

    @property
    def datasets(self) -> list[str]:
        """Dataset names in order of first appearance."""
        return list(pd.unique(self.frame["dataset"]))

    @property
    def models(self) -> list[str]:
        """Model names in order of first appearance."""
        return list(pd.unique(self.frame["model"]))

    def matrix(self) -> pd.DataFrame:
        """Accuracy as a (n_datasets, n_models) frame, index ``dataset``, NaN where not measured."""
        wide = self.frame.pivot(index="dataset", columns="model", values="accuracy")
        return wide.reindex(index=self.datasets, columns=self.models).rename_axis(index="dataset", columns="model")

    def to_json_dict(self) -> dict[str, list[dict[str, Any]]]:
        """The JSON format: ``{dataset: [{model_name, accuracy, model_type?, trained_on_dataset?}]}``.

        Accuracy is a fraction; missing optional fields are left out.
        """
        result: dict[str, list[dict[str, Any]]] = {}
        for row in self.frame.itertuples(index=False):
            record: dict[str, Any] = {"model_name": row.model, "accuracy": float(row.accuracy)}
            for column in OPTIONAL_COLUMNS:
                value = getattr(row, column)
                if not pd.isna(value):
                    record[column] = str(value)
            result.setdefault(row.dataset, []).append(record)
        return result

    def restrict(
        self, models: Iterable[str] | None = None, datasets: Iterable[str] | None = None
    ) -> PerformanceTable:
        """The rows whose model and dataset are among those given (None = keep all).

        Names are matched through :func:`normalize_name`; names absent from the table are ignored.
        """
        keep = pd.Series(True, index=self.frame.index)
        parts = []
        for column, names in (("model", models), ("dataset", datasets)):
            if names is None:
                continue
            wanted = {normalize_name(name) for name in names}
            keep &= self.frame[column].map(normalize_name).isin(wanted)
            parts.append(f"{len(wanted)} {column}s")
        frame = self.frame[keep].reset_index(drop=True)
        if frame.empty:
            raise PerformanceTableError(f"{self.report.source}: restricting to {', '.join(parts)} leaves no rows")
        note = f"restricted to {', '.join(parts) or 'everything'}: kept {len(frame)} of {len(self.frame)} rows"
        report = replace(self.report, n_rows_kept=len(frame), notes=(*self.report.notes, note))
        return PerformanceTable(frame=frame, report=report)


@dataclass(frozen=True)
class NameReport:
    """How a table's names compare with the zoo's and the catalog's (after :func:`normalize_name`).

    ``unknown_*``: in the table but not known (table spelling); ``missing_*``: known but not in the
    table (known spelling); ``*_map``: table name -> known name for every match.
    """

    unknown_models: tuple[str, ...]
    missing_models: tuple[str, ...]
    unknown_datasets: tuple[str, ...]
    missing_datasets: tuple[str, ...]
    model_map: dict[str, str]
    dataset_map: dict[str, str]

    @property
    def all_known(self) -> bool:
        """True when every model and dataset of the table was matched."""
        return not self.unknown_models and not self.unknown_datasets


def check_names(
    table: PerformanceTable, known_models: Iterable[str], known_datasets: Iterable[str]
) -> NameReport:
    """Compare the table's model and dataset names with known ones. See :class:`NameReport`.

    Raises ValueError if two known names normalise to the same key (the match would be ambiguous).
    """
    unknown_models, missing_models, model_map = _compare(table.models, list(known_models), "model")
    unknown_datasets, missing_datasets, dataset_map = _compare(table.datasets, list(known_datasets), "dataset")
    return NameReport(unknown_models, missing_models, unknown_datasets, missing_datasets, model_map, dataset_map)


def _compare(
    table_names: Sequence[str], known: Sequence[str], kind: str
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    by_key: dict[str, str] = {}
    for name in known:
        key = normalize_name(name)
        if key in by_key and by_key[key] != name:
            raise ValueError(f"known {kind} names {by_key[key]!r} and {name!r} both normalise to {key!r}")
        by_key[key] = name
    mapping = {name: by_key[normalize_name(name)] for name in table_names if normalize_name(name) in by_key}
    unknown = tuple(name for name in table_names if name not in mapping)
    matched = set(mapping.values())
    missing = tuple(dict.fromkeys(name for name in known if name not in matched))
    return unknown, missing, mapping


def load_performance_table(
    path: str | os.PathLike[str] | UPath,
    *,
    dataset_column: str | None = None,
    model_columns: str | Sequence[str] | None = None,
    accuracy_column: str | None = None,
    missing_values: Collection[float] = (),
) -> PerformanceTable:
    """Read a performance table from a ``.json`` or ``.csv`` / ``.tsv`` file (local or fsspec).

    CSV columns are found case-insensitively unless named: the dataset from ``dataset``,
    ``target``, ``target dataset``...; the accuracy from ``accuracy``, ``acc``,
    ``FinetuneAccuracy``, ``Oracle``, ``top1``...; the model from ``model`` / ``model_name``, else
    from an ``architecture`` column joined with a source-dataset column when there is one: PARC's
    ``Architecture,Source Dataset`` give ``resnet50__imagenet`` (see ``MODEL_NAME_SEPARATOR``).
    ``model_columns`` names the column(s) to join instead. ``model_type`` / ``architecture`` and
    ``trained_on_dataset`` / ``source dataset`` columns fill the optional fields.

    Normalisation (each step recorded in ``.report``): accuracies equal to one of
    ``missing_values`` (e.g. PARC's ``-1`` sentinel) and NaN accuracies are dropped; if any value is
    above 1.0 the whole table is taken as percent and divided by 100; duplicate (dataset, model)
    rows are averaged. Errors (:class:`PerformanceTableError`, naming the file, and the rows with
    their values): malformed JSON/CSV, missing columns, an empty table, non-numeric, negative or
    > 100 accuracy, and values in (0, 1] inside a percent-scale table (fractions mixed with
    percents).
    """
    upath = as_upath(path)
    source = str(path)
    suffix = upath.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise PerformanceTableError(f"{source}: unknown format {suffix!r}; expected .json, .csv or .tsv")
    try:
        data = upath.read_bytes()
    except OSError as error:
        raise PerformanceTableError(f"{source}: cannot read the table ({type(error).__name__}: {error})") from error
    return read_performance_table(
        data, suffix, source=source, dataset_column=dataset_column, model_columns=model_columns,
        accuracy_column=accuracy_column, missing_values=missing_values,
    )


def read_performance_table(
    data: bytes,
    suffix: str,
    *,
    source: str,
    dataset_column: str | None = None,
    model_columns: str | Sequence[str] | None = None,
    accuracy_column: str | None = None,
    missing_values: Collection[float] = (),
) -> PerformanceTable:
    """:func:`load_performance_table` of bytes already read (``suffix``: ``.json``, ``.csv`` or ``.tsv``;
    ``source``: the name errors start with), so that a caller can hash exactly the bytes it parses."""
    suffix = suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise PerformanceTableError(f"{source}: unknown format {suffix!r}; expected .json, .csv or .tsv")
    try:
        text = data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")  # as a text-mode read
    except UnicodeDecodeError as error:
        raise PerformanceTableError(f"{source}: not UTF-8 text ({error})") from error
    if suffix == ".json":
        if dataset_column or model_columns or accuracy_column:
            raise PerformanceTableError(f"{source}: column options apply to CSV tables only")
        raw, columns, notes = _read_json(text, source)
    else:
        notes = []
        raw, columns = _read_csv(
            text, source, sep="\t" if suffix == ".tsv" else ",", dataset_column=dataset_column,
            model_columns=model_columns, accuracy_column=accuracy_column,
        )
    table = _normalise(raw, source=source, columns=columns, missing_values=missing_values, notes=notes)
    logger.info(
        "loaded %s: %d datasets x %d models (%d rows)", source, len(table.datasets), len(table.models),
        len(table.frame),
    )
    return table


class _JsonObject(dict):
    """A JSON object that remembers the keys it held more than once (json.loads keeps the last)."""

    repeated: dict[str, int]


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject()
    obj.repeated = {}
    for key, value in pairs:
        if key in obj:
            obj.repeated[key] = obj.repeated.get(key, 1) + 1
            if isinstance(obj[key], list) and isinstance(value, list):
                obj[key] = obj[key] + value  # a dataset listed twice: both lists are kept
                continue
        obj[key] = value
    return obj


def _read_json(text: str, source: str) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    try:
        data = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as error:
        raise PerformanceTableError(f"{source}: malformed JSON: {error}") from error
    notes = []
    if isinstance(data, _JsonObject) and data.repeated:
        notes.append(f"datasets listed more than once in the JSON object, their records merged: {data.repeated}")
    if not isinstance(data, dict):
        raise PerformanceTableError(
            f"{source}: expected a JSON object {{dataset: [records]}}, got a {type(data).__name__}"
        )
    rows = []
    for dataset, entries in data.items():
        if not isinstance(entries, list):
            raise PerformanceTableError(
                f"{source}: dataset {dataset!r} must map to a list of records, got a {type(entries).__name__}"
            )
        for index, entry in enumerate(entries):
            repeated = getattr(entry, "repeated", None)
            if repeated:
                raise PerformanceTableError(
                    f"{source}: dataset {dataset!r}, entry {index}: keys given more than once {sorted(repeated)} "
                    f"(which value is meant is ambiguous)"
                )
            try:
                record = PerformanceRecord.model_validate(entry)
            except ValidationError as error:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in error.errors()
                )
                raise PerformanceTableError(
                    f"{source}: dataset {dataset!r}, entry {index}: {problems}"
                ) from error
            rows.append(
                {
                    "dataset": dataset,
                    "model": record.model_name,
                    "accuracy": np.nan if record.accuracy is None else record.accuracy,
                    "model_type": record.model_type,
                    "trained_on_dataset": record.trained_on_dataset,
                    "row_ref": f"entry {index} of {dataset!r}",
                }
            )
    raw = pd.DataFrame(rows, columns=[*COLUMNS, "row_ref"])
    raw["accuracy"] = raw["accuracy"].astype(np.float64)
    return raw, {"dataset": "<key>", "model": "model_name", "accuracy": "accuracy"}, notes


def _header_key(header: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(header).casefold())


def _find_column(headers: Sequence[str], keys: Sequence[str]) -> str | None:
    for key in keys:
        for header in headers:
            if _header_key(header) == key:
                return header
    return None


def _named_column(headers: Sequence[str], name: str, source: str) -> str:
    if name in headers:
        return name
    found = _find_column(headers, [_header_key(name)])
    if found is None:
        raise PerformanceTableError(f"{source}: no column {name!r}; columns are {list(headers)}")
    return found


def _read_csv(
    text: str,
    source: str,
    *,
    sep: str,
    dataset_column: str | None,
    model_columns: str | Sequence[str] | None,
    accuracy_column: str | None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise PerformanceTableError(f"{source}: malformed CSV: {error}".replace("\n", " ")) from error
    first_row = next(csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True), [])
    header_counts = pd.Series([h.strip() for h in first_row]).value_counts()
    if (header_counts > 1).any():  # pandas would rename the second to "name.1" and use the first
        raise PerformanceTableError(
            f"{source}: malformed CSV: columns named more than once: {sorted(header_counts[header_counts > 1].index)}"
        )
    headers = [str(h) for h in table.columns]

    def required(role: str, given: str | None, keys: Sequence[str], option: str) -> str:
        if given is not None:
            return _named_column(headers, given, source)
        found = _find_column(headers, keys)
        if found is None:
            raise PerformanceTableError(
                f"{source}: no {role} column (looked for {', '.join(keys)}, case-insensitively); "
                f"columns are {headers}; pass {option}="
            )
        return found

    dataset = required("dataset", dataset_column, _DATASET_KEYS, "dataset_column")
    accuracy = required("accuracy", accuracy_column, _ACCURACY_KEYS, "accuracy_column")
    if model_columns is not None:
        names = [model_columns] if isinstance(model_columns, str) else list(model_columns)
        if not names:
            raise PerformanceTableError(f"{source}: model_columns is empty")
        models = [_named_column(headers, name, source) for name in names]
    elif (model := _find_column(headers, _MODEL_KEYS)) is not None:
        models = [model]
    elif (architecture := _find_column(headers, _ARCHITECTURE_KEYS)) is not None:
        trained_on = _find_column([h for h in headers if h != dataset], _SOURCE_KEYS)
        models = [architecture] if trained_on is None else [architecture, trained_on]
    else:
        keys = (*_MODEL_KEYS, *_ARCHITECTURE_KEYS)
        raise PerformanceTableError(
            f"{source}: no model column (looked for {', '.join(keys)}, case-insensitively); "
            f"columns are {headers}; pass model_columns="
        )
    used = [dataset, accuracy, *models]
    if len(set(used)) != len(used):
        raise PerformanceTableError(f"{source}: a column has two roles: dataset={dataset!r}, "
                                    f"accuracy={accuracy!r}, model={models}")
    others = [h for h in headers if h not in (dataset, accuracy)]
    model_type = _find_column(others, _MODEL_TYPE_KEYS)
    trained_on = _find_column(others, _TRAINED_ON_KEYS)

    raw = pd.DataFrame({"dataset": table[dataset]})
    model_parts = [table[column].str.strip() for column in models]
    model_name = model_parts[0]
    for part in model_parts[1:]:
        model_name = model_name + MODEL_NAME_SEPARATOR + part  # NaN in any part -> NaN name
    raw["model"] = model_name
    raw["model_type"] = table[model_type] if model_type else None
    raw["trained_on_dataset"] = table[trained_on] if trained_on else None
    raw["row_ref"] = [f"data row {i + 1}" for i in range(len(table))]
    raw["accuracy"] = _parse_accuracy(table[accuracy], raw, source)
    columns = {"dataset": dataset, "model": " + ".join(models), "accuracy": accuracy}
    if model_type:
        columns["model_type"] = model_type
    if trained_on:
        columns["trained_on_dataset"] = trained_on
    return raw, columns


def _describe_rows(rows: pd.DataFrame, what: str = "accuracy") -> str:
    described = [
        f"(dataset={row.dataset!r}, model={row.model!r}, {what}={getattr(row, what)!r}"
        + (f", {row.row_ref})" if "row_ref" in rows.columns else ")")
        for row in rows.head(_MAX_LISTED).itertuples(index=False)
    ]
    more = f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else ""
    return ", ".join(described) + more


def _parse_accuracy(values: pd.Series, raw: pd.DataFrame, source: str) -> pd.Series:
    """Accuracy as float64; text that is not a number is an error naming the rows."""
    as_text = values.astype("object").map(lambda v: v.strip() if isinstance(v, str) else v)
    parsed = pd.to_numeric(as_text, errors="coerce").astype(np.float64)
    missing_text = as_text.astype(str).str.casefold().isin(["", "nan", "na", "n/a", "null", "none"])
    bad = parsed.isna() & as_text.notna() & ~missing_text
    if bad.any():
        rows = raw.loc[bad].assign(accuracy=as_text[bad])
        raise PerformanceTableError(f"{source}: accuracy is not a number in rows {_describe_rows(rows)}")
    return parsed


def _clean_names(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    raw = raw.copy()
    for column in ("dataset", "model"):
        names = raw[column].astype("object").map(lambda v: v.strip() if isinstance(v, str) else v)
        empty = names.isna() | (names.astype(str) == "")
        if empty.any():
            where = ", ".join(raw.loc[empty, "row_ref"].head(_MAX_LISTED).tolist())
            raise PerformanceTableError(f"{source}: {column} name missing in {empty.sum()} rows ({where})")
        raw[column] = names.astype(str)
    for column in OPTIONAL_COLUMNS:
        values = raw[column].astype("object").map(lambda v: v.strip() if isinstance(v, str) else v)
        raw[column] = values.where(values.notna() & (values.astype(str) != ""), None)
    return raw


_TRUE_FLAGS = frozenset({"true", "yes"})
_FALSE_FLAGS = frozenset({"false", "no"})


def _flags_as_datasets(raw: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``trained_on_dataset`` flags turned into names: true -> the row's dataset, false -> None; names kept.
    Returns the frame and the number of flags read."""
    def as_name(value: Any, dataset: str) -> tuple[Any, bool]:
        if isinstance(value, bool | np.bool_):
            return (dataset if value else None), True
        if isinstance(value, str) and value.casefold() in _TRUE_FLAGS | _FALSE_FLAGS:
            return (dataset if value.casefold() in _TRUE_FLAGS else None), True
        return value, False

    read = [as_name(v, d) for v, d in zip(raw["trained_on_dataset"], raw["dataset"], strict=True)]
    n_flags = sum(flag for _, flag in read)
    if not n_flags:
        return raw, 0
    return raw.assign(trained_on_dataset=pd.Series([v for v, _ in read], index=raw.index, dtype=object)), n_flags


def _name_collisions(names: Iterable[str]) -> list[tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        groups.setdefault(normalize_name(name), []).append(name)
    return [tuple(group) for group in groups.values() if len(group) > 1]


def _normalise(
    raw: pd.DataFrame,
    *,
    source: str,
    columns: dict[str, str],
    missing_values: Collection[float] = (),
    notes: Sequence[str] = (),
) -> PerformanceTable:
    """Shared by every format: ``raw`` has COLUMNS (accuracy float, any scale) and ``row_ref``.

    ``notes``: normalisations already applied while reading (reported with the others).
    """
    n_read = len(raw)
    if n_read == 0:
        raise PerformanceTableError(f"{source}: the table is empty (no rows)")
    raw = _clean_names(raw, source)
    notes = list(notes)
    raw, n_flags = _flags_as_datasets(raw)
    if n_flags:
        notes.append(f"trained_on_dataset given as a true/false flag in {n_flags} rows: read as the row's own "
                     "dataset (true) or none (false)")

    if missing_values:
        sentinel = raw["accuracy"].isin(list(missing_values))
        if sentinel.any():
            notes.append(f"treated {int(sentinel.sum())} accuracies equal to {sorted(missing_values)} as missing")
            raw.loc[sentinel, "accuracy"] = np.nan
    missing = raw["accuracy"].isna()
    dropped = tuple(zip(raw.loc[missing, "dataset"], raw.loc[missing, "model"], strict=True))
    if dropped:
        notes.append(f"dropped {len(dropped)} rows with no accuracy: {dropped[:_MAX_LISTED]}"
                     + (" ..." if len(dropped) > _MAX_LISTED else ""))
        raw = raw.loc[~missing]
    if raw.empty:
        raise PerformanceTableError(f"{source}: the table is empty (no row has an accuracy)")

    accuracy = raw["accuracy"]
    for bad, problem in ((accuracy < 0, "negative accuracy"), (accuracy > 100, "accuracy above 100")):
        if bad.any():
            raise PerformanceTableError(f"{source}: {problem} in rows {_describe_rows(raw.loc[bad])}")
    percent = bool((accuracy > 1.0).any())
    if percent:
        small = (accuracy > 0) & (accuracy <= 1.0)
        if small.any():
            raise PerformanceTableError(
                f"{source}: the table is in percent (values up to {accuracy.max():g}) but has accuracies in "
                f"(0, 1], which look like fractions mixed in: rows {_describe_rows(raw.loc[small])}"
            )
        raw = raw.assign(accuracy=accuracy / 100.0)
        notes.append("accuracy was in percent (values above 1.0): divided by 100 for the whole table")

    grouped = raw.groupby(["dataset", "model"], sort=False)
    counts = grouped.size()
    duplicates = tuple((d, m, int(n)) for (d, m), n in counts[counts > 1].items())
    if duplicates:
        notes.append(f"averaged {len(duplicates)} duplicated (dataset, model) pairs: {duplicates[:_MAX_LISTED]}"
                     + (" ..." if len(duplicates) > _MAX_LISTED else ""))
    frame = grouped.agg(
        accuracy=("accuracy", "mean"),
        model_type=("model_type", "first"),
        trained_on_dataset=("trained_on_dataset", "first"),
    ).reset_index()
    frame = frame[list(COLUMNS)]
    for column in OPTIONAL_COLUMNS:  # object dtype, str or None, whatever the input format
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), None)

    collisions = tuple(_name_collisions(frame["dataset"]) + _name_collisions(frame["model"]))
    if collisions:
        notes.append(f"distinct names equal after normalize_name (kept apart): {collisions}")
    for note in notes:
        logger.info("%s: %s", source, note)
    if collisions:
        logger.warning("%s: names that differ only in case or separators: %s", source, collisions)

    report = LoadReport(
        source=source,
        n_rows_read=n_read,
        n_rows_kept=len(frame),
        columns=dict(columns),
        percent_rescaled=percent,
        dropped_missing=dropped,
        averaged_duplicates=duplicates,
        name_collisions=collisions,
        notes=tuple(notes),
    )
    return PerformanceTable(frame=frame, report=report)
