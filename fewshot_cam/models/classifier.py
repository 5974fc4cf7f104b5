"""Backbone + head, in the timm contract.

``forward_features(x) -> (B, C, h, w)``, ``forward_head(f, pre_logits=False)``,
``forward(x) = forward_head(forward_features(x))``. Inputs are float images in [0, 1], (B, 3, H, W);
the ImageNet normalisation is a buffer inside the model, so every caller feeds the same thing and
``.to(device)`` moves it. The head also gives each class's spatial map (``head.class_maps``), which is
what CAM-loss and the analysis draw.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fewshot_cam.models.cam import class_activation_maps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


class FewShotClassifier(nn.Module):
    """A backbone returning spatial maps, plus a classification head over the base classes."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.backbone.out_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) floats in [0, 1] -> feature maps (B, C, h, w)."""
        return self.backbone((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """features: (B, C, h, w) -> pooled embedding (B, C) if ``pre_logits`` else logits (B, K)."""
        return features.mean(dim=(2, 3)) if pre_logits else self.head(features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> pooled features (B, C): what ProtoNet and the baselines use."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
