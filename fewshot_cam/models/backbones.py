"""Backbones that return spatial feature maps (B, C, h, w); each has ``out_channels``.

``BACKBONES`` maps a name to a constructor taking keyword options (unknown options raise).
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from fewshot_cam.errors import UserError


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv -> BatchNorm -> ReLU -> 2x2 max-pool (halves h and w)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ConvNet(nn.Module):
    """Conv-4 (Vinyals et al. 2016; Snell et al. 2017): ``depth`` conv blocks of ``width`` channels.

    (B, 3, 84, 84) -> (B, 64, 5, 5) with the defaults.
    """

    def __init__(self, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        blocks = [conv_block(3 if i == 0 else width, width) for i in range(depth)]
        self.layers = nn.Sequential(*blocks)
        self.out_channels = width

    def forward(self, x):
        return self.layers(x)  # (B, width, H / 2**depth, W / 2**depth)


def conv4() -> nn.Module:
    return ConvNet(width=64, depth=4)


def tiny() -> nn.Module:
    """Two 16-channel blocks: for tests, (B, 3, 32, 32) -> (B, 16, 8, 8)."""
    return ConvNet(width=16, depth=2)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "conv4": conv4,
    "tiny": tiny,
}


def build_backbone(name: str, **options) -> nn.Module:
    """Construct backbone ``name`` from ``BACKBONES``."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone '{name}' (valid: {', '.join(sorted(BACKBONES))})")
    return BACKBONES[name](**options)
