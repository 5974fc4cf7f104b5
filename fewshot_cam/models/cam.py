"""Class activation maps computed in the autograd graph (no hooks).

CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016):
    M_c(x, y) = sum_k W[c, k] f_k(x, y),
so that with global average pooling the spatial mean of M_c plus b_c is the logit of class c.
CAAM, the class-agnostic activation map (Wang et al., "CAM-loss", ICCV 2021):
    A(x, y) = sum_k f_k(x, y).
The CAM-loss, the distillation losses and the analysis pictures all call these functions, so the
training signal and the drawn maps are one implementation. They compute in float32 even under autocast.
"""

from __future__ import annotations

import torch


def _float32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.float() for t in tensors]


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """All class maps. features: (B, C, h, w); weight: (K, C) -> (B, K, h, w), float32."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        features, weight = _float32(features, weight)
        return torch.einsum("bchw,kc->bkhw", features, weight)


def target_cam(features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """The map of one class per image -> (B, h, w), float32.

    features: (B, C, h, w). With ``target`` (B,) class indices, ``weight`` is the (K, C) head weight;
    without it, ``weight`` is already per image, (B, C) (e.g. the ProtoNet prototype of each image's class).
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        features, weight = _float32(features, weight)
        w = weight if target is None else weight[target]  # (B, C)
        return torch.einsum("bchw,bc->bhw", features, w)


def caam(features: torch.Tensor) -> torch.Tensor:
    """Class-agnostic activation map. features: (B, C, h, w) -> (B, h, w), float32."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        return features.float().sum(dim=1)


def minmax_normalize(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Min-max normalise each map over its last two dims to [0, 1]. maps: (..., h, w).

    A constant map (max - min < eps) becomes all zeros rather than dividing by ~0.
    """
    flat = maps.flatten(-2)  # (..., h*w)
    lo = flat.amin(dim=-1, keepdim=True)
    hi = flat.amax(dim=-1, keepdim=True)
    span = hi - lo
    out = torch.where(span > eps, (flat - lo) / span.clamp_min(eps), torch.zeros_like(flat))
    return out.view_as(maps)
