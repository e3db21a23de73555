"""Three small image classifiers for 32x32 RGB input, written like timm modules.

They make the stand-in model zoo of :mod:`ml_core.fixture_world`; each stays under ~100k
parameters at its default config. Every network has the timm entry points:

* ``forward_features(x)``: images ``(B, C, H, W)`` -> pooled penultimate features ``(B, F)``;
* ``forward_head(features, pre_logits=False)``: ``(B, F)`` -> logits ``(B, num_classes)``;
* ``forward(x)``: images ``(B, C, H, W)`` -> logits ``(B, num_classes)``;
* ``num_features`` (= F), ``num_classes``, ``get_classifier()``, ``reset_classifier(n)``.

Any input size works (global average pooling); 32x32 is what the zoo is trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES",
    "DepthwiseNet",
    "SmallCNN",
    "TinyResNet",
    "UnknownArchitectureError",
    "build_architecture",
    "count_parameters",
]


class UnknownArchitectureError(ValueError):
    """The architecture name is not in :data:`ARCHITECTURES`."""


class _Classifier(nn.Module):
    """Shared timm-style head: global average pool -> linear. Subclasses set ``self.head``."""

    num_features: int
    num_classes: int
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features ``(B, F)`` -> logits ``(B, num_classes)`` (or the features if ``pre_logits``)."""
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` (normalised floats) -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh one with ``num_classes`` outputs (0 = identity)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


class SmallCNN(_Classifier):
    """Plain conv net: ``depth`` blocks of conv3x3 -> ReLU -> maxpool/2, widths doubling.

    Args:
        width: channels of the first block (block ``i`` has ``width * 2**i``).
        depth: number of blocks (each halves the resolution).
        num_classes: outputs of the linear head.
        in_chans: input channels.
    """

    def __init__(self, width: int = 16, depth: int = 3, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"SmallCNN: width and depth must be >= 1, got {width=}, {depth=}")
        layers: list[nn.Module] = []
        c_in = in_chans
        for i in range(depth):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c_in
        self.num_classes = num_classes
        self.head = nn.Linear(c_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> pooled features ``(B, num_features)``."""
        return self.global_pool(self.features(x)).flatten(1)


class BasicBlock(nn.Module):
    """ResNet basic block: two conv3x3 + BatchNorm, identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, c_in, H, W)`` -> ``(B, c_out, H / stride, W / stride)``."""
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.downsample(x))


class TinyResNet(_Classifier):
    """A CIFAR-style ResNet: conv3x3 stem, then stages of :class:`BasicBlock`.

    Stage ``i`` has ``width * 2**i`` channels and stride 2 (except the first). BatchNorm layers
    carry integer ``num_batches_tracked`` buffers beside the float weights.

    Args:
        width: channels of the stem and the first stage.
        blocks: number of blocks per stage (its length is the number of stages).
        num_classes: outputs of the linear head.
        in_chans: input channels.
    """

    def __init__(
        self,
        width: int = 12,
        blocks: Sequence[int] = (1, 1, 1),
        num_classes: int = 10,
        in_chans: int = 3,
    ):
        super().__init__()
        blocks = tuple(int(b) for b in blocks)
        if width < 1 or not blocks or min(blocks) < 1:
            raise ValueError(f"TinyResNet: need width >= 1 and blocks >= 1 per stage, got {width=}, {blocks=}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        c_in = width
        for i, n_blocks in enumerate(blocks):
            c_out = width * 2**i
            layers = [BasicBlock(c_in, c_out, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(c_out, c_out) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c_in
        self.num_classes = num_classes
        self.head = nn.Linear(c_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> pooled features ``(B, num_features)``."""
        return self.global_pool(self.stages(self.stem(x))).flatten(1)


class DepthwiseSeparable(nn.Module):
    """MobileNet block: depthwise conv3x3 -> BN -> ReLU6 -> pointwise conv1x1 -> BN -> ReLU6."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv_pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, c_in, H, W)`` -> ``(B, c_out, H / stride, W / stride)``."""
        x = self.act(self.bn1(self.conv_dw(x)))
        return self.act(self.bn2(self.conv_pw(x)))


class DepthwiseNet(_Classifier):
    """MobileNet-style net: conv3x3 stride-2 stem, then ``depth`` depthwise-separable blocks.

    Block ``i`` has ``width * 2**i`` output channels and stride 2 (except the first).

    Args:
        width: channels of the stem and the first block.
        depth: number of depthwise-separable blocks.
        num_classes: outputs of the linear head.
        in_chans: input channels.
    """

    def __init__(self, width: int = 16, depth: int = 4, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"DepthwiseNet: width and depth must be >= 1, got {width=}, {depth=}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU6(inplace=True),
        )
        blocks: list[nn.Module] = []
        c_in = width
        for i in range(depth):
            c_out = width * 2**i
            blocks.append(DepthwiseSeparable(c_in, c_out, stride=1 if i == 0 else 2))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c_in
        self.num_classes = num_classes
        self.head = nn.Linear(c_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> pooled features ``(B, num_features)``."""
        return self.global_pool(self.blocks(self.stem(x))).flatten(1)


ARCHITECTURES: dict[str, type[_Classifier]] = {
    "smallcnn": SmallCNN,
    "tinyresnet": TinyResNet,
    "depthwisenet": DepthwiseNet,
}


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture by name with its constructor kwargs (random init)."""
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return cls(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
