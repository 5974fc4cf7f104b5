"""Score-CAM: channels weighted by the class score of the input masked with each channel's map.

Masked images go through the model ``batch_size`` at a time, so memory stays bounded by the batch
size whatever the number of channels C (never all B * C masked images at once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_cam.errors import UserError
from fewshot_cam.progress import progress as progress_bar

# variant -> (align_corners of the mask upsampling, softmax over "classes" or "channels")
VARIANTS: dict[str, tuple[bool, str]] = {
    "paper": (False, "classes"),  # the authors' code (haofanwang/Score-CAM)
    "pytorch-grad-cam": (True, "channels"),  # pytorch-grad-cam 1.5.7's ScoreCAM
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


def channel_scores(
    scorer, x: torch.Tensor, features: torch.Tensor, target: torch.Tensor, batch_size: int, variant: str, progress: bool
) -> torch.Tensor:
    """Score of each image's target class on each channel-masked copy -> (B, C). features: (B, C, h, w)."""
    align_corners, softmax = VARIANTS[variant]
    B, C = features.shape[:2]
    scores = torch.empty(B * C, device=x.device)
    for start in progress_bar(range(0, B * C, batch_size), desc="scorecam", enabled=progress):
        pair = torch.arange(start, min(start + batch_size, B * C), device=x.device)  # flat (image, channel)
        b, k = pair // C, pair % C
        masks = channel_masks(features[b, k], x.shape[-2:], align_corners)  # (n, H, W)
        logits = scorer.forward(x[b] * masks[:, None])[1].float()  # (n, K)
        if softmax == "classes":
            logits = logits.softmax(dim=1)
        scores[pair] = logits.gather(1, target[b].view(-1, 1))[:, 0]
    return scores.view(B, C)


def scorecam(
    scorer, x: torch.Tensor, target: torch.Tensor, batch_size: int = 32, variant: str = "paper", progress: bool = False
) -> torch.Tensor:
    """Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
    Networks", CVPR Workshops 2020).

    H_k = s(Up(A_k)) (upsampled, min-max normalised channel map); M_c = ReLU(sum_k w_k A_k) with
    "paper": w_k = softmax_classes(f(x * H_k))_c, as in the authors' code (no baseline subtracted;
        channels with a constant map get weight 0);
    "pytorch-grad-cam": w = softmax_k(f(x * H_k)_c), the raw logits softmaxed over the channels
        (and masks upsampled with align_corners=True), as pytorch-grad-cam 1.5.7 does.
    x: (B, 3, H, W), target: (B,) -> (B, h, w). ``batch_size`` masked images per forward pass.
    """
    if variant not in VARIANTS:
        raise UserError(f"unknown Score-CAM variant '{variant}' (valid: {', '.join(VARIANTS)})")
    if batch_size < 1:
        raise UserError(f"Score-CAM batch_size must be >= 1, got {batch_size}")
    with torch.no_grad():
        features = scorer.forward(x)[0].float()  # (B, C, h, w)
        weights = channel_scores(scorer, x, features, target, batch_size, variant, progress)  # (B, C)
        if variant == "paper":
            flat = features.flatten(2)
            weights = torch.where(flat.amax(2) > flat.amin(2), weights, torch.zeros_like(weights))
        else:
            weights = weights.softmax(dim=1)
        return torch.einsum("bchw,bc->bhw", features, weights).clamp_min(0)
