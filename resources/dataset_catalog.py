"""The dataset catalog: one ImageFolder tree per dataset under a root folder."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from ml_core.artifacts import partition_key
from resources.settings import default_datasets_dir

logger = logging.getLogger(__name__)

DATASET_CARD = "dataset.json"


class CatalogError(ValueError):
    """The dataset root is unusable; the message names the folder."""


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: ``name`` (folder name), ``key`` (partition key), its folder, its card (family...)."""

    name: str
    key: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def family(self) -> str:
        return str(self.metadata.get("family", self.name))


def _read_card(folder: Path) -> dict[str, Any]:
    card = folder / DATASET_CARD
    if not card.is_file():
        return {}
    try:
        value = json.loads(card.read_text())
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("%s: unreadable dataset card, ignored (%s)", card, err)
        return {}
    return value if isinstance(value, dict) else {}


def discover_datasets(root: Path) -> list[DatasetEntry]:
    """Sub-folders of ``root`` that hold at least one split folder (hidden folders ignored).

    Raises CatalogError when two folders get the same partition key (only possible when one
    folder is literally named like another's hashed key, e.g. ``my-data-1a2b3c4d``).
    """
    if not root.is_dir():
        raise CatalogError(f"{root}: datasets folder not found")
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            has_split = any(s.is_dir() and not s.name.startswith(".") for s in folder.iterdir())
        except OSError as err:
            logger.warning("%s: cannot list the dataset folder, left out (%s)", folder, err)
            continue
        if has_split:
            entries.append(DatasetEntry(folder.name, partition_key(folder.name), folder, _read_card(folder)))
    keys: dict[str, str] = {}
    for e in entries:
        if e.key in keys:
            raise CatalogError(
                f"{root}: dataset folders {keys[e.key]!r} and {e.name!r} share the partition key {e.key!r}; rename one"
            )
        keys[e.key] = e.name
    return entries


class DatasetCatalog(ConfigurableResource):
    """Where new datasets land, as ``<root>/<dataset>/<split>/<class>/<image>``."""

    root: str = Field(default_factory=default_datasets_dir, description="folder of ImageFolder datasets")
    split: str = Field(default="train", description="split whose images become the dataset's tokens")

    def entries(self) -> list[DatasetEntry]:
        return discover_datasets(Path(self.root))

    def entry(self, key: str) -> DatasetEntry:
        for e in self.entries():
            if e.key == key:
                return e
        raise CatalogError(f"dataset partition {key!r} is not under {self.root} (removed or renamed?)")
