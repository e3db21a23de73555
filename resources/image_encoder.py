"""The image encoder resource: which open_clip model turns images into dataset tokens."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from ml_core.image_encoder import ImageEncoderSpec
from resources.settings import default_encoder


class ImageEncoderResource(ConfigurableResource):
    """open_clip architecture + pretrained tag or local weights file (+ optional local config)."""

    architecture: str = Field(default_factory=lambda: default_encoder()["architecture"])
    pretrained: str | None = Field(default_factory=lambda: default_encoder()["pretrained"])
    model_config_file: str | None = Field(default_factory=lambda: default_encoder()["model_config_file"])
    precision: Literal["fp32", "bf16"] = "fp32"
    normalize: bool = True

    def spec(self, device: str = "cpu") -> ImageEncoderSpec:
        return ImageEncoderSpec(
            architecture=self.architecture,
            pretrained=self.pretrained,
            model_config_file=self.model_config_file,
            precision=self.precision,
            device=device,
            normalize=self.normalize,
        )
