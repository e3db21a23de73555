"""Where the heavy steps run."""

from __future__ import annotations

import os

import torch
from dagster import ConfigurableResource
from pydantic import Field


class ComputeDevice(ConfigurableResource):
    """``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when available)."""

    device: str = Field(default_factory=lambda: os.environ.get("MODELREC_DEVICE", "cpu"))

    def torch_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device
