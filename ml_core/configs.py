"""Configs are frozen dataclasses, nested where a config holds another (a training config holds the
config of the model it builds). Two helpers read and change them as plain nested dicts, as they are
saved in artifacts (JSON) and given as run config:

* :func:`config_from_dict`: a (nested) dict back into its dataclass, e.g. the config saved beside a
  model's weights (``RankerArtifact.load``);
* :func:`replace_nested`: a copy with some fields changed, nested dicts for nested configs
  (``{"model": {"architecture": "linear"}, "trainer": {"lr": 0.05}}``).

Unknown keys are errors that name them, so a typo in a run config never passes silently.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def _nested_type(annotation: Any) -> type | None:
    """The dataclass type of a field annotated with one (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def config_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """An instance of the dataclass ``cls`` from ``data``; nested dataclass fields from nested dicts;
    fields ``data`` leaves out take their defaults. Raises ValueError naming unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {unknown} (known: {sorted(names)})")
    types = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        nested = _nested_type(types[key])
        if nested is not None and isinstance(value, Mapping):
            value = config_from_dict(nested, value)
        elif isinstance(value, list) and typing.get_origin(types[key]) is tuple:
            value = tuple(value)
        values[key] = value
    return cls(**values)


def replace_nested(config: T, changes: Mapping[str, Any]) -> T:
    """A copy of the dataclass instance ``config`` with ``changes`` applied; a nested dict changes
    the fields of a nested config and keeps its others. Raises ValueError naming unknown keys."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"{type(config).__name__}: unknown config keys {unknown} (known: {sorted(names)})")
    values = {}
    for key, value in changes.items():
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = replace_nested(current, value)
        values[key] = value
    return dataclasses.replace(config, **values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The nested dict of a (nested) dataclass config: what :func:`config_from_dict` reads back."""
    return dataclasses.asdict(config)
