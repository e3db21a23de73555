"""The model zoo: a folder of checkpoints (plus an optional manifest of architecture-named models)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from ml_core.artifacts import partition_key
from ml_core.weights import CHECKPOINT_SUFFIXES, ModelCard, ModelCardError, library_architecture
from resources.settings import default_zoo_dir, setting

logger = logging.getLogger(__name__)


class ZooError(ValueError):
    """The zoo folder or manifest is unusable; the message names the file."""


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo: ``name`` (as users call it), ``key`` (its partition key), its file."""

    name: str
    key: str
    path: Path
    architecture: str | None = None  # the card's timm / torchvision network the weights load into, if any
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    card_path: Path | None = None  # the sidecar or manifest the metadata came from

    def card(self) -> ModelCard:
        """The model card (sidecar or manifest entry); :class:`ZooError` names the file when it is malformed."""
        try:
            return ModelCard.from_metadata(self.metadata, self.card_path or self.path)
        except ModelCardError as err:
            raise ZooError(str(err)) from err

    def source_images(self) -> Path | None:
        """The folder sampling this model's pre-training images, if its card names one
        (``source_images``, relative to the card's folder); raises :class:`ZooError` naming the
        card when the value is not a folder path."""
        value = self.metadata.get("source_images")
        if value is None:
            return None
        base = self.card_path.parent if self.card_path is not None else self.path.parent
        if not isinstance(value, str) or not value.strip():
            raise ZooError(f"{self.card_path or self.path}: 'source_images' must be a folder path relative to "
                           f"{base}, got {value!r}")
        return (base / value).resolve()


def _read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        value = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("%s: unreadable sidecar metadata, ignored (%s)", sidecar, err)
        return {}
    return value if isinstance(value, dict) else {}


def discover_zoo(root: Path, manifest: Path | None = None) -> list[ZooEntry]:
    """Every checkpoint file directly in ``root`` plus the manifest's entries, sorted by name.

    Hidden files (``.x.pt``, macOS ``._x.safetensors``) are ignored.
    A model's name is its file stem (the full file name when two files share a stem). The
    manifest is JSON ``{"models": [{"name", "path", "architecture"?}]}`` with paths relative to
    the manifest's folder, for ``timm:`` / ``torchvision:`` architectures with local weights.
    A sidecar (or manifest entry) may name ``source_images``: an ImageFolder
    (``<folder>/<split>/<class>/<image>``) sampling the model's pre-training data, relative to the
    sidecar's (manifest's) folder; ``model_source_tokens`` encodes it.
    """
    entries: list[ZooEntry] = []
    if root.is_dir():
        files = sorted(
            p for p in root.iterdir()
            if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES and not p.name.startswith(".")
        )
        stems: dict[str, int] = {}
        for p in files:
            stems[p.stem] = stems.get(p.stem, 0) + 1
        for p in files:
            name = p.stem if stems[p.stem] == 1 else p.name
            meta = _read_sidecar(p)
            entries.append(ZooEntry(name, partition_key(name), p, library_architecture(meta), meta, p.with_suffix(".json")))
    elif manifest is None:
        raise ZooError(f"{root}: model zoo folder not found")
    if manifest is not None:
        try:
            listed = json.loads(manifest.read_text())["models"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise ZooError(f"{manifest}: not a zoo manifest {{'models': [...]}} ({err})") from err
        for item in listed:
            if not isinstance(item, dict) or "name" not in item or "path" not in item:
                raise ZooError(f"{manifest}: each model needs 'name' and 'path' (got {item!r})")
            if not isinstance(item["name"], str) or not item["name"].strip():
                raise ZooError(f"{manifest}: a model name must be a non-empty string (got {item['name']!r})")
            path = (manifest.parent / item["path"]).resolve()
            entries.append(ZooEntry(item["name"], partition_key(item["name"]), path, library_architecture(item), item,
                                    manifest))
    keys: dict[str, str] = {}
    for e in entries:
        if e.key in keys:
            raise ZooError(f"two models named {keys[e.key]!r} and {e.name!r} share the key {e.key!r}")
        keys[e.key] = e.name
    return sorted(entries, key=lambda e: e.name)


class ModelZoo(ConfigurableResource):
    """The folder of checkpoints users drop models into."""

    root: str = Field(default_factory=default_zoo_dir, description="folder of .safetensors / .pt / .pth / .bin")
    manifest: str | None = Field(
        default_factory=lambda: setting("MODELREC_ZOO_MANIFEST", None),
        description="optional JSON manifest of architecture-named models",
    )

    def entries(self) -> list[ZooEntry]:
        return discover_zoo(Path(self.root), Path(self.manifest) if self.manifest else None)

    def entry(self, key: str) -> ZooEntry:
        for e in self.entries():
            if e.key == key:
                return e
        raise ZooError(f"model partition {key!r} is not in the zoo at {self.root} (removed or renamed?)")

    def cards(self, keys: Collection[str], warn: Callable[[str], None] = logger.warning) -> dict[str, ModelCard]:
        """``{key: card}`` of the zoo models in ``keys``. A malformed card spoils only its own model: it is
        reported through ``warn`` (naming the file) and replaced by an empty card (every field unknown)."""
        cards = {}
        for entry in self.entries():
            if entry.key in keys:
                try:
                    cards[entry.key] = entry.card()
                except ZooError as error:
                    warn(f"{error}; that model's card fields are unknown")
                    cards[entry.key] = ModelCard(name=entry.name)
        return cards


def cards_fingerprint(cards: dict[str, ModelCard]) -> str:
    """One hash of every card's content (a cache-key input for the assets that read cards)."""
    return hashlib.sha256(repr(sorted((k, c.model_dump_json()) for k, c in cards.items())).encode()).hexdigest()
