"""Backbone + head, in the timm contract.

``forward_features(x) -> (B, C, h, w)``, ``forward_head(f, pre_logits=False)``,
``forward(x) = forward_head(forward_features(x))``. Inputs are float images in [0, 1], (B, 3, H, W);
the ImageNet normalisation is a buffer inside the model, so every caller feeds the same thing and
``.to(device)`` moves it. The head also gives each class's spatial map (``head.class_maps``), which is
what CAM-loss and the analysis draw.

``NORMALIZATIONS`` names the (mean, std) pairs a model can carry; ``POOLS`` the ways the map becomes the
few-shot embedding (``embed``): "avg" (global average pooling) or "flatten" (the whole (C, h, w) map as
one vector, as ProtoNet's and Chen et al.'s Conv-4: 64 x 5 x 5 = 1600-d at 84 px). CAMs always use the map.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fewshot_cam.models.cam import class_activation_maps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    # RFS (Tian et al., ECCV 2020), dataset/transform_cfg.py: miniImageNet's pixel statistics
    "rfs": ((120.39586422 / 255, 115.59361427 / 255, 104.54012653 / 255),
            (70.68188272 / 255, 68.27635443 / 255, 72.54505529 / 255)),
}

POOLS = ("avg", "flatten")


class LinearHead(nn.Module):
    """Global average pooling + linear layer (W, b).

    logits = W @ mean_{x,y} f(x, y) + b, equivalently mean_{x,y} M_c(x, y) + b_c with M_c the CAM.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    @property
    def weight(self) -> torch.Tensor:
        """(K, C) class weights, the CAM weights."""
        return self.fc.weight

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> (B, C)."""
        return features.mean(dim=(2, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> logits (B, K)."""
        return self.fc(self.pool(features))

    def class_maps(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> raw CAMs of every class (B, K, h, w), float32."""
        return class_activation_maps(features, self.weight)


class CosineHead(nn.Module):
    """Baseline++'s classifier (Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019;
    ``distLinear`` in their ``backbone.py``), over globally average-pooled features f:

        s_k = scale * (f / (||f|| + 1e-5)) . (g_k v_k / ||v_k||),   scale = 2 if K <= 200 else 10,

    weight-normalised class vectors (``WeightNorm(dim=0)``: direction v_k, learnable norm g_k, which
    starts at ||v_k||) and no bias, as their code. v starts like ``nn.Linear``'s weight.
    ``weight`` = scale * g_k v_k / ||v_k|| is the CAM weight: s_k = mean_{x,y} (weight_k . f(x, y)) / (||f|| + 1e-5),
    so each class map is the CAM up to the positive per-image factor 1 / (||f|| + 1e-5).
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        v = nn.Linear(in_channels, num_classes, bias=False).weight.detach()  # (K, C)
        self.v = nn.Parameter(v.clone())
        self.g = nn.Parameter(v.norm(dim=1))
        self.scale = 2.0 if num_classes <= 200 else 10.0

    @property
    def weight(self) -> torch.Tensor:
        """(K, C) scale * g v / ||v||: the effective class vectors, the CAM weights."""
        return self.v * (self.scale * self.g / self.v.norm(dim=1)).unsqueeze(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> logits (B, K)."""
        f = features.mean(dim=(2, 3))  # (B, C)
        f = f / (f.norm(dim=1, keepdim=True) + 1e-5)
        return f @ self.weight.t()

    def class_maps(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> CAMs of the effective class vectors (B, K, h, w), float32."""
        return class_activation_maps(features, self.weight)


class FewShotClassifier(nn.Module):
    """A backbone returning spatial maps, plus a classification head over the base classes.

    ``normalization``: a key of ``NORMALIZATIONS``; ``pool``: one of ``POOLS`` (the embedding).
    ``head_takes_stages``: the head reads every stage's map (``forward_stages``), as SAOL's decoder does.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, normalization: str = "imagenet", pool: str = "avg",
                 head_takes_stages: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pool = pool
        self.head_takes_stages = head_takes_stages
        mean, std = NORMALIZATIONS[normalization]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.backbone.out_channels

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) floats in [0, 1] -> (x - mean) / std, what the backbone reads."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) floats in [0, 1] -> feature maps (B, C, h, w)."""
        return self.backbone(self.normalize(x))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) floats in [0, 1] -> every stage's map [f_1, ..., f_L], f_L = forward_features(x)."""
        return self.backbone.forward_stages(self.normalize(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """features: (B, C, h, w) (a stage-reading head: the list of stage maps) -> the embedding
        (B, C) or (B, C*h*w) (``pool``) if ``pre_logits`` else logits (B, K)."""
        if pre_logits:
            last = features if isinstance(features, torch.Tensor) else features[-1]
            return last.flatten(1) if self.pool == "flatten" else last.mean(dim=(2, 3))
        return self.head(features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> the embedding ProtoNet and the baselines use: (B, C), or (B, C*h*w) flattened."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_takes_stages:
            return self.head(self.forward_stages(x))
        return self.forward_head(self.forward_features(x))
