"""Build a :class:`FewShotClassifier` from a :class:`ModelConfig`.

``HEADS`` maps a head name to a constructor ``(in_channels, num_classes) -> nn.Module``; a head must
provide ``forward(features (B, C, h, w)) -> (B, K)``, ``weight`` (K, C) and ``class_maps``. A head in
``STAGE_HEADS`` is built with the backbone's ``stage_channels`` and reads every stage's map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from fewshot_cam.errors import UserError
from fewshot_cam.models.backbones import TIMM_PREFIX, build_backbone, check_backbone
from fewshot_cam.models.classifier import NORMALIZATIONS, POOLS, CosineHead, FewShotClassifier, LinearHead
from fewshot_cam.models.saol import SAOLHead, SAOLRawLogitPSPHead
from fewshot_cam.registry import Registry

HEADS: Registry[Callable[[int, int], nn.Module]] = Registry("head")
HEADS.register("linear", LinearHead, help="global average pooling + linear layer")
HEADS.register("cosine", CosineHead, help="cosine classifier (Chen et al. 2019 distLinear): Baseline++ pretraining")
HEADS.register("saol", SAOLHead, help="Spatially Attentive Output Layer (Kim et al., CVPR 2020, Eq. 2)")
HEADS.register("saol-rawlogit-psp", SAOLRawLogitPSPHead,
               help="our earlier SAOL variant: attention-weighted raw logits, pooling-pyramid decoder")
STAGE_HEADS = frozenset({"saol"})


@dataclass(frozen=True)
class ModelConfig:
    """The network: backbone and head. Saved inside every checkpoint as ``model_config``."""

    backbone: str = "conv4"
    """Backbone name in ``fewshot_cam.models.backbones.BACKBONES``: conv4, resnet12, resnet18, and the
    test-sized tiny and resnet12-tiny; or ``timm:NAME``, any timm model (the optional extra ``timm``)."""

    drop_block: bool = False
    """ResNet-12 only: DropBlock (rate 0.1, block 5) after blocks 3-4 and dropout 0.1 after blocks 1-2."""

    head: str = "linear"
    """Classification head name in ``HEADS``: "linear" (GAP + linear layer), "cosine" (Baseline++'s
    cosine classifier, Chen et al. 2019), "saol" (SAOL, Kim et al. 2020, over the backbone's stages),
    "saol-rawlogit-psp" (this project's earlier SAOL variant)."""

    normalization: str = "imagenet"
    """Input normalisation (mean, std) inside the model: "imagenet", or "rfs" (RFS's miniImageNet statistics)."""

    weights: str | None = None
    """Initial backbone weights from a file the user already has (``timm:NAME`` backbones: a timm / torch
    state dict or .safetensors); none by default. Nothing is ever downloaded."""

    pool: str = "avg"
    """The few-shot embedding: "avg" (global average pooling, C-d) or "flatten" (the whole C x h x w
    map, as ProtoNet's Conv-4: 1600-d at 84 px). The classification head and CAMs use the map either way."""

    def __post_init__(self) -> None:
        check_backbone(self.backbone)
        if self.weights is not None and not self.backbone.startswith(TIMM_PREFIX):
            raise UserError(f"model.weights is for timm:NAME backbones, not '{self.backbone}'")
        HEADS.get(self.head)
        if self.normalization not in NORMALIZATIONS:
            raise UserError(f"unknown model.normalization '{self.normalization}' (valid: {', '.join(NORMALIZATIONS)})")
        if self.pool not in POOLS:
            raise UserError(f"unknown model.pool '{self.pool}' (valid: {', '.join(POOLS)})")


def build_model(cfg: ModelConfig, num_classes: int, load_weights: bool = True) -> FewShotClassifier:
    """Backbone ``cfg.backbone`` + head ``cfg.head`` over ``num_classes`` base classes, on the CPU;
    ``cfg.weights`` loaded into the backbone when ``load_weights`` (not when a checkpoint's own
    weights follow)."""
    head = HEADS.get(cfg.head)
    if num_classes < 1:
        raise UserError(f"a classifier needs at least one class, got num_classes={num_classes}")
    options = {"drop_block": True} if cfg.drop_block else {}
    backbone = build_backbone(cfg.backbone, **options)
    if cfg.weights is not None and load_weights:
        backbone.load_weights(cfg.weights)
    stages = cfg.head in STAGE_HEADS
    head = HEADS.get(cfg.head)(backbone.stage_channels if stages else backbone.out_channels, num_classes)
    return FewShotClassifier(backbone, head, cfg.normalization, cfg.pool, head_takes_stages=stages)
