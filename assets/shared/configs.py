"""Dagster run config made from the ml_core config dataclasses, so that each setting is defined once.

:func:`dagster_config` turns a config dataclass instance (its fields, nested configs, defaults) into a
Dagster :class:`~dagster.Config` class: the launchpad shows the same nested structure
(``{"model": {"d_model": 64}, "trainer": {"epochs": 40}}``) with the same defaults, and
``config.to_ml()`` gives the dataclass back. Fields a run must not set (widths read from the data,
the torch device, seeds that another field sets) are left out and keep their defaults.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, TypeVar

import pydantic
from dagster import Config

from ml_core.configs import replace_nested

T = TypeVar("T")
#: the fields of a ranker's training config a run never sets: token widths (read from the data), the
#: device (the compute resource) and the seeds (the enclosing config's ``seed`` sets them).
RANKER_TRAINING_EXCLUDED = ("model.dataset_token_dim", "model.model_token_dim", "trainer.device", "seed",
                            "trainer.seed")


def nested(prefix: str, paths: Collection[str]) -> set[str]:
    """``paths`` of a config nested under the field ``prefix``."""
    return {f"{prefix}.{path}" for path in paths}


class MLConfig(Config):
    """A Dagster config generated from an ml_core config dataclass (see :func:`dagster_config`)."""

    _ml_defaults: ClassVar[Any] = None  # the dataclass instance it was generated from
    _asset_fields: ClassVar[frozenset[str]] = frozenset()  # asset-only fields, not in the dataclass

    def to_ml(self) -> Any:
        """The dataclass: the defaults with every configured value applied."""
        return replace_nested(self._ml_defaults, _as_tuples(self.model_dump(exclude=set(self._asset_fields))))


def _schema_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) is tuple:  # tuple[str, ...]: a list in run config
        return list[typing.get_args(annotation)[0]]
    return annotation


def _fields(defaults: Any, name: str, exclude: set[str], prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(type(defaults))
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(defaults):
        path = f"{prefix}{f.name}"
        if path in exclude:
            continue
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            nested = _config_class(value, f"{name}_{f.name}", exclude, f"{path}.")
            fields[f.name] = (nested, pydantic.Field(default_factory=nested))
        else:
            default = list(value) if isinstance(value, tuple) else value
            fields[f.name] = (_schema_type(hints[f.name]), pydantic.Field(default=default))
    return fields


def _config_class(defaults: Any, name: str, exclude: set[str], prefix: str = "") -> type[Config]:
    return pydantic.create_model(name, __base__=Config, __doc__=type(defaults).__doc__,
                                 **_fields(defaults, name, exclude, prefix))


def _as_tuples(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _as_tuples(v) for k, v in value.items()}
    return tuple(value) if isinstance(value, list) else value


def dagster_config(
    defaults: T,
    name: str,
    *,
    exclude: Collection[str] = (),
    extra: Mapping[str, tuple[Any, Any]] | None = None,
) -> type[MLConfig]:
    """A Dagster Config class named ``name`` with the fields and defaults of the dataclass ``defaults``.

    ``exclude``: dotted field paths (``"model.dataset_token_dim"``) left out of the run config.
    ``extra``: ``{field: (type, default)}`` of asset-only settings, not part of the dataclass;
    ``to_ml()`` ignores them. ``to_ml()`` returns ``defaults`` with every configured value applied.
    """
    extra = dict(extra or {})
    fields = _fields(defaults, name, set(exclude), "")
    fields |= {key: (kind, pydantic.Field(default=default)) for key, (kind, default) in extra.items()}
    cls = pydantic.create_model(name, __base__=MLConfig, __doc__=type(defaults).__doc__, **fields)
    cls._ml_defaults = defaults
    cls._asset_fields = frozenset(extra)
    return cls
