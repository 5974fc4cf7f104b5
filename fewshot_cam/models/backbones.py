"""Backbones that return spatial feature maps (B, C, h, w); each has ``out_channels``.

Each also has ``forward_stages(x) -> [f_1, ..., f_L]``, the output of every stage (block) with
``f_L = forward(x)``, and ``stage_channels`` (their channel counts): what SAOL's decoder and
Zagoruyko & Komodakis attention transfer read.

``BACKBONES`` maps a name to a constructor taking keyword options (unknown options raise).
``timm:NAME`` is any timm model (:mod:`fewshot_cam.models.timm_backbone`, the optional extra ``timm``).
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

from fewshot_cam.errors import UserError
from fewshot_cam.models.resnet import ResNet12, ResNet18
from fewshot_cam.registry import Registry


def conv_block(in_channels: int, out_channels: int, pool: bool = True) -> nn.Sequential:
    """3x3 conv -> BatchNorm -> ReLU [-> 2x2 max-pool, halving h and w]."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2) if pool else nn.Identity(),
    )


class ConvNet(nn.Module):
    """Conv-4 (Vinyals et al. 2016; Snell et al. 2017): ``depth`` conv blocks of ``width`` channels,
    the first ``pools`` of them (all by default) ending in a 2x2 max-pool.

    (B, 3, 84, 84) -> (B, 64, 5, 5) with the defaults.
    """

    def __init__(self, width: int = 64, depth: int = 4, pools: int | None = None) -> None:
        super().__init__()
        pools = depth if pools is None else pools
        blocks = [conv_block(3 if i == 0 else width, width, pool=i < pools) for i in range(depth)]
        self.layers = nn.Sequential(*blocks)
        self.out_channels = width
        self.stage_channels = (width,) * depth

    def forward(self, x):
        return self.layers(x)  # (B, width, H / 2**pools, W / 2**pools)

    def forward_stages(self, x):
        """x: (B, 3, H, W) -> the output of every block, [(B, width, h_i, w_i)] * depth."""
        stages = []
        for block in self.layers:
            x = block(x)
            stages.append(x)
        return stages


def conv4() -> nn.Module:
    return ConvNet(width=64, depth=4)


def conv4_2pool() -> nn.Module:
    """Conv-4 pooling in the first two blocks only, the Relation Network embedding (Sung et al.,
    CVPR 2018, there without padding): (B, 3, 84, 84) -> (B, 64, 21, 21); (B, 3, 32, 32) -> (B, 64, 8, 8).

    Same parameters as ``conv4`` and ~1.15x its compute at 32 px, but a map fine enough for CAMs on small images.
    """
    return ConvNet(width=64, depth=4, pools=2)


def tiny() -> nn.Module:
    """Two 16-channel blocks: for tests, (B, 3, 32, 32) -> (B, 16, 8, 8)."""
    return ConvNet(width=16, depth=2)


def resnet12(drop_block: bool = False) -> nn.Module:
    """ResNet-12, 64-160-320-640: (B, 3, 84, 84) -> (B, 640, 5, 5), ~12.4M parameters."""
    return ResNet12(widths=(64, 160, 320, 640), drop_block=drop_block)


def resnet12_tiny(drop_block: bool = False) -> nn.Module:
    """ResNet-12 at widths 8-16-24-32, for tests: (B, 3, 32, 32) -> (B, 32, 2, 2)."""
    return ResNet12(widths=(8, 16, 24, 32), drop_block=drop_block, block_size=2)


def resnet18() -> nn.Module:
    """torchvision ResNet-18 without avgpool/fc, random init: (B, 3, 84, 84) -> (B, 512, 3, 3)."""
    return ResNet18()


BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
BACKBONES.register("conv4", conv4, help="Conv-4, 64 channels, 4 pools (Snell et al. 2017)")
BACKBONES.register("conv4-2pool", conv4_2pool, help="Conv-4 with 2 pools (Relation Network embedding)")
BACKBONES.register("tiny", tiny, help="test-sized Conv")
BACKBONES.register("resnet12", resnet12, help="ResNet-12, 64-160-320-640 (Lee et al. 2019)")
BACKBONES.register("resnet12-tiny", resnet12_tiny, help="test-sized ResNet-12")
BACKBONES.register("resnet18", resnet18, help="torchvision ResNet-18 (He et al. 2016) without avgpool and fc")


TIMM_PREFIX = "timm:"


class BackboneChoices(list):
    """The CLI's ``choices`` for --backbone: the registry's names, and any ``timm:NAME``."""

    def __contains__(self, name: object) -> bool:
        return (isinstance(name, str) and name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)) or (
            super().__contains__(name))


def backbone_choices() -> BackboneChoices:
    return BackboneChoices(BACKBONES.names())


BACKBONE_METAVAR = "{" + ",".join(BACKBONES.names()) + ",timm:NAME}"


def check_backbone(name: str) -> None:
    """UserError unless ``name`` is registered or ``timm:NAME`` (the timm model is checked when built)."""
    if name not in backbone_choices():
        BACKBONES.get(name)


def build_backbone(name: str, **options) -> nn.Module:
    """Construct backbone ``name`` from ``BACKBONES`` (or timm for ``timm:NAME``); an option it does not
    take raises UserError."""
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        from fewshot_cam.models.timm_backbone import TimmBackbone

        if options:
            raise UserError(f"backbone '{name}' does not take option '{sorted(options)[0]}' (its options: none)")
        return TimmBackbone(name[len(TIMM_PREFIX):])
    ctor = BACKBONES.get(name)
    accepted = set(inspect.signature(ctor).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        valid = ", ".join(sorted(accepted)) or "none"
        raise UserError(f"backbone '{name}' does not take option '{unknown[0]}' (its options: {valid})")
    return ctor(**options)
