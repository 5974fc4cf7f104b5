"""Build a :class:`FewShotClassifier` from a :class:`ModelConfig`.

``HEADS`` maps a head name to a constructor ``(in_channels, num_classes) -> nn.Module``; a head must
provide ``forward(features (B, C, h, w)) -> (B, K)``, ``weight`` (K, C) and ``class_maps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from fewshot_cam.errors import UserError
from fewshot_cam.models.backbones import BACKBONES, build_backbone
from fewshot_cam.models.classifier import FewShotClassifier, LinearHead
from fewshot_cam.models.saol import SAOLHead
from fewshot_cam.registry import Registry

HEADS: Registry[Callable[[int, int], nn.Module]] = Registry("head")
HEADS.register("linear", LinearHead, help="global average pooling + linear layer")
HEADS.register("saol", SAOLHead, help="SAOL spatial head (Wang et al. 2021)")


@dataclass(frozen=True)
class ModelConfig:
    """The network: backbone and head. Saved inside every checkpoint as ``model_config``."""

    backbone: str = "conv4"
    """Backbone name in ``fewshot_cam.models.backbones.BACKBONES``: conv4, resnet12, resnet18, and the
    test-sized tiny and resnet12-tiny."""

    drop_block: bool = False
    """ResNet-12 only: DropBlock (rate 0.1, block 5) after blocks 3-4 and dropout 0.1 after blocks 1-2."""

    head: str = "linear"
    """Classification head name in ``HEADS``: "linear" is global average pooling + a linear layer."""

    def __post_init__(self) -> None:
        BACKBONES.get(self.backbone)
        HEADS.get(self.head)


def build_model(cfg: ModelConfig, num_classes: int) -> FewShotClassifier:
    """Backbone ``cfg.backbone`` + head ``cfg.head`` over ``num_classes`` base classes, on the CPU."""
    head = HEADS.get(cfg.head)
    if num_classes < 1:
        raise UserError(f"a classifier needs at least one class, got num_classes={num_classes}")
    options = {"drop_block": True} if cfg.drop_block else {}
    backbone = build_backbone(cfg.backbone, **options)
    return FewShotClassifier(backbone, head(backbone.out_channels, num_classes))
