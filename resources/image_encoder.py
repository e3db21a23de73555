"""The image encoder resource: which encoder (open_clip or EfficientNet-Lite0) turns images into dataset tokens."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from ml_core.images import ImageEncoderSpec
from resources.settings import default_encoder, downloads_allowed


class ImageEncoderResource(ConfigurableResource):
    """``kind="open_clip"``: architecture + pretrained tag or local weights file (+ optional local
    config). ``kind="efficientnet_lite0"``: the ImageNet EfficientNet-Lite0 that ships offline
    (``pretrained="imagenet"``), run at ``image_size`` pixels; not CLIP."""

    kind: Literal["open_clip", "efficientnet_lite0"] = Field(default_factory=lambda: default_encoder()["kind"])
    architecture: str = Field(default_factory=lambda: default_encoder()["architecture"])
    pretrained: str | None = Field(default_factory=lambda: default_encoder()["pretrained"])
    model_config_file: str | None = Field(default_factory=lambda: default_encoder()["model_config_file"])
    image_size: int | None = Field(
        default_factory=lambda: default_encoder()["image_size"],
        description="input side in pixels (efficientnet_lite0 only; open_clip reads its config)",
    )
    precision: Literal["fp32", "bf16"] = "fp32"
    normalize: bool = True
    allow_download: bool = Field(
        default_factory=downloads_allowed, description="let open_clip download a tag's weights (MODELREC_ALLOW_DOWNLOAD)"
    )

    def spec(self, device: str = "cpu") -> ImageEncoderSpec:
        return ImageEncoderSpec(
            kind=self.kind,
            architecture=self.architecture,
            pretrained=self.pretrained,
            model_config_file=self.model_config_file,
            image_size=self.image_size,
            precision=self.precision,
            device=device,
            normalize=self.normalize,
            allow_download=self.allow_download,
        )
