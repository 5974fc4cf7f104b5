"""Score-CAM: channels weighted by the class score of the input masked with each channel's map.

Masked images go through the model ``batch_size`` at a time, so memory stays bounded by the batch
size whatever the number of channels C (never all B * C masked images at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fewshot_cam.analysis.gradcam import target_or_top1
from fewshot_cam.errors import UserError
from fewshot_cam.progress import progress as progress_bar


@dataclass(frozen=True)
class Variant:
    """How a Score-CAM variant masks, scores and sums."""

    align_corners: bool
    """align_corners of the bilinear mask upsampling."""
    softmax: str
    """"classes": softmax of the masked image's logits, the target's probability; "channels": the
    target's raw logit, softmaxed over the channels."""
    normalized_input: bool
    """Mask the *normalised* input (removed pixels become the dataset mean); else the model's input as given."""
    input_resolution: bool
    """Sum the upsampled channel maps at the input's resolution (then ReLU); else at the feature map's."""


VARIANTS: dict[str, Variant] = {
    "paper": Variant(False, "classes", True, True),  # the authors' code (haofanwang/Score-CAM)
    "pytorch-grad-cam": Variant(True, "channels", False, False),  # pytorch-grad-cam 1.5.7's ScoreCAM
}


def channel_masks(maps: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """maps: (n, h, w) -> (n, H, W): bilinear upsampling, then (m - min) / (max - min + 1e-8).

    A constant map becomes all zeros.
    """
    up = F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=align_corners)
    flat = up.flatten(1)  # (n, H*W)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    return ((flat - lo) / (hi - lo + 1e-8)).view(-1, *size)


def masked_inputs(x: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor:
    """x: (n, 3, H, W) in [0, 1]; masks: (n, H, W) -> the model inputs (n, 3, H, W).

    ``fill`` None: x * m. ``fill`` the model's normalisation mean (1, 3, 1, 1): fill + m (x - fill), the
    [0, 1] image whose normalisation (x' - mean) / std is m * (x - mean) / std, the masked normalised input.
    """
    if fill is None:
        return x * masks[:, None]
    fill = fill.to(x.device, x.dtype)
    return fill + masks[:, None] * (x - fill)


def channel_scores(
    scorer, x: torch.Tensor, features: torch.Tensor, target: torch.Tensor, batch_size: int, variant: str, progress: bool
) -> torch.Tensor:
    """Score of each image's target class on each channel-masked copy -> (B, C). features: (B, C, h, w)."""
    v = VARIANTS[variant]
    fill = scorer.input_mean if v.normalized_input else None
    B, C = features.shape[:2]
    scores = torch.empty(B * C, device=x.device)
    for start in progress_bar(range(0, B * C, batch_size), desc="scorecam", enabled=progress):
        pair = torch.arange(start, min(start + batch_size, B * C), device=x.device)  # flat (image, channel)
        b, k = pair // C, pair % C
        masks = channel_masks(features[b, k], x.shape[-2:], v.align_corners)  # (n, H, W)
        logits = scorer.forward(masked_inputs(x[b], masks, fill))[1].float()  # (n, K)
        if v.softmax == "classes":
            logits = logits.softmax(dim=1)
        scores[pair] = logits.gather(1, target[b].view(-1, 1))[:, 0]
    return scores.view(B, C)


def scorecam(
    scorer, x: torch.Tensor, target: torch.Tensor | None, batch_size: int = 32, variant: str = "paper",
    progress: bool = False,
) -> torch.Tensor:
    """Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
    Networks", CVPR Workshops 2020).

    H_k = s(Up(A_k)) (upsampled, min-max normalised channel map); M_c = ReLU(sum_k w_k A_k) with
    "paper" (default), as the authors' code: the *normalised* input is masked, X * H_k (removed pixels
        become the dataset mean: ``scorer.input_mean``), w_k = softmax_classes(f(X * H_k))_c, channels
        with a constant map skipped, no baseline subtracted, and the sum taken over the upsampled maps
        Up(A_k) at the input's resolution before the ReLU -> (B, H, W);
    "pytorch-grad-cam": as pytorch-grad-cam 1.5.7: the model's input as given is masked (here the
        [0, 1] image, so removed pixels are black), w = softmax_k(f(x * H_k)_c) over the channels,
        masks upsampled with align_corners=True, sum at feature resolution -> (B, h, w).
    x: (B, 3, H, W) in [0, 1], target: (B,) or None (top-1 of the unmasked forward). ``batch_size``: masked
    images per forward pass.
    The caller normalises the map (``attribute``: min-max, as both codes do).
    """
    if variant not in VARIANTS:
        raise UserError(f"unknown Score-CAM variant '{variant}' (valid: {', '.join(VARIANTS)})")
    if batch_size < 1:
        raise UserError(f"Score-CAM batch_size must be >= 1, got {batch_size}")
    with torch.no_grad():
        features, logits = scorer.forward(x)
        features, target = features.float(), target_or_top1(target, logits)  # (B, C, h, w), (B,)
        weights = channel_scores(scorer, x, features, target, batch_size, variant, progress)  # (B, C)
        if variant != "paper":
            return torch.einsum("bchw,bc->bhw", features, weights.softmax(dim=1)).clamp_min(0)
        flat = features.flatten(2)
        weights = torch.where(flat.amax(2) > flat.amin(2), weights, torch.zeros_like(weights))
        summed = torch.einsum("bchw,bc->bhw", features, weights)  # (B, h, w)
        # sum_k w_k Up(A_k) = Up(sum_k w_k A_k): bilinear upsampling is linear, so one map is resized, not C
        up = F.interpolate(summed[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return up.clamp_min(0)  # (B, H, W)
