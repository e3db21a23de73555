"""The model card: one schema for a zoo model's sidecar ``<name>.json`` (or its zoo-manifest entry).

A card says what a checkpoint is and how to feed it. Every field is optional when a card is
read (a user's zoo carries what it carries, and unknown keys are kept); the built-in worlds fill
them all. Two fields name the network:

* ``architecture``: the network that rebuilds the checkpoint. Either a name of
  :mod:`ml_core.weights.architectures` (``"smallcnn"``: the generated zoos' nets, which the transfer
  protocol can fine-tune), or ``"timm:<name>"`` / ``"torchvision:<name>"`` (a library network; its
  weights file is loaded into it strictly, see :func:`ml_core.weights.open_checkpoint`);
* ``arch_kwargs`` and ``num_classes``: the constructor's arguments.

``input_size`` (pixels), ``pixel_mean`` / ``pixel_std`` (per channel, on [0, 1] pixels; one
number stands for all three channels) say how to preprocess images for it. ``source_images``
names a folder sampling its pre-training images (relative to the card's folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer

from ml_core.artifacts import hash_parts

#: the fields the transfer protocol reads; they alone key a transfer measurement.
TRANSFER_FIELDS = ("architecture", "arch_kwargs", "num_classes", "input_size", "pixel_mean", "pixel_std")
#: an older sidecar key for a library architecture, still read.
_LEGACY_LIBRARY_KEY = "timm_or_torchvision_architecture"


class ModelCardError(ValueError):
    """A card that cannot be read; the message names the file and the field."""


class ModelCard(BaseModel):
    """A zoo model's card. See the module docstring for the meaning of each field."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    architecture: str | None = None
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int | None = None
    source_task: str | None = None
    source_classes: list[str] = Field(default_factory=list)
    source_accuracy: float | None = None
    source_accuracy_note: str | None = None
    source_train_images: int | None = None
    source_test_images: int | None = None
    pretrain_epochs: int | None = None
    parameter_count: int | None = None
    weights_file: str | None = None
    format: Literal["safetensors", "pt"] = "safetensors"
    state_dict_key: str | None = None  # a ``.pt`` that nests its state dict under this key
    input_size: int = 32
    pixel_mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    pixel_std: list[float] = Field(default_factory=lambda: [0.25, 0.25, 0.25])
    origin: str | None = None
    standin: bool = False
    source_images: str | None = None

    @field_validator("pixel_mean", "pixel_std", mode="before")
    @classmethod
    def _per_channel(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [float(value)] * 3
        return value

    @model_serializer(mode="wrap")
    def _drop_unused_nesting(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("state_dict_key") is None:  # only a nested .pt has one; other cards never show it
            data.pop("state_dict_key", None)
        return data

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], source: Path | str) -> ModelCard:
        """The card of a sidecar's (or manifest entry's) metadata; :class:`ModelCardError` names ``source``."""
        data = dict(metadata)
        legacy = data.pop(_LEGACY_LIBRARY_KEY, None)
        if legacy and not data.get("architecture"):
            data["architecture"] = legacy
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "card"
            raise ModelCardError(f"{source}: model card field {where!r}: {first['msg']}") from err

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """The card in a sidecar JSON file."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ModelCardError(f"{path}: unreadable model card ({err})") from err
        if not isinstance(data, dict):
            raise ModelCardError(f"{path}: a model card is a JSON object, got {type(data).__name__}")
        return cls.from_metadata(data, path)

    @property
    def library_architecture(self) -> str | None:
        """``timm:<name>`` / ``torchvision:<name>`` when the network comes from a library, else None
        (see :func:`library_architecture`)."""
        return library_architecture({"architecture": self.architecture})

    def transfer_fingerprint(self) -> str:
        """Hash of the fields the transfer protocol reads (:data:`TRANSFER_FIELDS`)."""
        return hash_parts("transfer_card", self.model_dump(mode="json", include=set(TRANSFER_FIELDS)))


def library_architecture(metadata: dict[str, Any]) -> str | None:
    """The ``<library>:<name>`` network a card's metadata names (``timm:`` / ``torchvision:``; another
    library is kept, so that loading says it is unknown), or None: a zoo architecture, or none. Reads raw
    metadata without validating the rest of the card, so that a zoo is listed even with a malformed card."""
    value = metadata.get("architecture") or metadata.get(_LEGACY_LIBRARY_KEY)
    return value if isinstance(value, str) and ":" in value else None
