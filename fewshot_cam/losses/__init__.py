"""Losses: CAM-loss, distillation (KD, AT, CCM), SAOL's losses and the episodic prototypical loss.

Pure tensor functions: ``cam_loss(features (B, C, h, w), weight (K, C), target (B,))`` drops into any
training loop whose model exposes its last feature map and its linear classifier's weight.
"""

from fewshot_cam.losses.camloss import LossConfig, alpha_at, cam_loss, total_loss
from fewshot_cam.losses.distill import DistillConfig, at_loss, ccm_loss, distill_loss, kd_loss
from fewshot_cam.losses.prototypical import prototypical_loss

__all__ = [
    "DistillConfig", "LossConfig", "alpha_at", "at_loss", "cam_loss", "ccm_loss", "distill_loss", "kd_loss",
    "prototypical_loss", "total_loss",
]
