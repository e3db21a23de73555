"""Where the heavy steps run."""

from __future__ import annotations

import torch
from dagster import ConfigurableResource
from pydantic import Field

from resources.settings import default_device


class ComputeDevice(ConfigurableResource):
    """``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when available)."""

    device: str = Field(default_factory=default_device)

    def torch_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device
