"""Cross-entropy plus CAM-loss.

CAM-loss (Wang et al., "CAM-loss: Towards Learning Spatially Discriminative Feature Representations",
ICCV 2021):
    L = L_CE(logits, y) + alpha * L_CAM,
    L_CAM = 1/(B h w) sum_{b, x, y} | Norm(A_b)(x, y) - Norm(M_{b, y_b})(x, y) |   (L1; squared for "l2"),
with A_b = sum_k f_k the class-agnostic activation map (CAAM), M_{b, c} = sum_k W[c, k] f_k the CAM of the
target class and Norm the per-map min-max normalisation to [0, 1]. The CAM uses a detached copy of W, so
L_CAM trains only the backbone (pulling the CAAM towards the target's CAM, i.e. suppressing features of
other classes and of the background), while L_CE trains backbone and head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from fewshot_cam.errors import UserError, check_ranges
from fewshot_cam.models.cam import caam, minmax_normalize, target_cam

DISTANCES = ("l1", "l2")


@dataclass(frozen=True)
class LossConfig:
    """Pretraining loss on the base classes."""

    loss: Literal["ce", "camloss"] = "ce"
    """"ce": cross-entropy only; "camloss": cross-entropy + alpha * CAM-loss."""

    alpha: float = 1.0
    """Weight of the CAM-loss term once warm-up is over (the paper tunes it per dataset; 1.0 is neutral)."""

    warmup_epochs: int = 0
    """Epochs (counted from 0) with alpha = 0, so the head's CAMs mean something before they supervise."""

    distance: Literal["l1", "l2"] = "l1"
    """Per-position distance between the normalised maps: "l1" (the paper's) or "l2" (squared)."""

    def __post_init__(self) -> None:
        if self.loss not in ("ce", "camloss"):
            raise UserError(f"unknown loss '{self.loss}' (valid: camloss, ce)")
        if self.distance not in DISTANCES:
            raise UserError(f"unknown CAM-loss distance '{self.distance}' (valid: {', '.join(DISTANCES)})")
        check_ranges("loss", self, {"alpha": (0, None), "warmup_epochs": (0, None)})


def cam_loss(features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, distance: str = "l1") -> torch.Tensor:
    """L_CAM = mean_{b, x, y} dist(Norm(CAAM_b), Norm(CAM_{b, y_b})) with W detached; float32 scalar.

    features: (B, C, h, w); weight: (K, C) head weight; target: (B,) class indices.
    """
    if distance not in DISTANCES:
        raise UserError(f"unknown CAM-loss distance '{distance}' (valid: {', '.join(DISTANCES)})")
    cam = minmax_normalize(target_cam(features, weight.detach(), target))  # (B, h, w)
    agnostic = minmax_normalize(caam(features))  # (B, h, w)
    diff = agnostic - cam
    return diff.abs().mean() if distance == "l1" else diff.square().mean()


def alpha_at(epoch: int, cfg: LossConfig) -> float:
    """CAM-loss weight at ``epoch`` (0-based): 0 for "ce" and during warm-up, ``cfg.alpha`` after."""
    if cfg.loss == "ce" or epoch < cfg.warmup_epochs:
        return 0.0
    return float(cfg.alpha)


def total_loss(
    logits: torch.Tensor,
    features: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    cfg: LossConfig,
    epoch: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = CE(logits, target) + alpha_at(epoch) * cam_loss(features, weight, target).

    logits: (B, K); features: (B, C, h, w) the map the logits were pooled from; weight: (K, C);
    target: (B,). Returns the loss and detached float32 scalars {"ce", "cam", "alpha"} for logging
    (the CAM term is still computed, without a graph, when alpha is 0).
    """
    ce = F.cross_entropy(logits.float(), target)
    alpha = alpha_at(epoch, cfg)
    if alpha > 0:
        cam = cam_loss(features, weight, target, cfg.distance)
        loss = ce + alpha * cam
    else:
        with torch.no_grad():
            cam = cam_loss(features, weight, target, cfg.distance)
        loss = ce
    alpha_t = torch.full((), alpha, device=ce.device)  # a fill, not a host copy: no GPU sync
    parts = {"ce": ce.detach(), "cam": cam.detach(), "alpha": alpha_t}
    return loss, parts
