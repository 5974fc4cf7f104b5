"""Knowledge distillation in pretraining, as in the CAM-loss paper (Wang et al., ICCV 2021, Sec. 4.3):

    L = L_ce + beta * L_kd + gamma * L_map,

    L_kd  = tau^2 * KL( softmax(z_t / tau) || softmax(z_s / tau) )          (Hinton et al., 2015)
    L_map = d( N(M_s^y), N(up(M_t^y)) )   "at":  attention transfer  (Zagoruyko & Komodakis, ICLR 2017),
                                                 the student's target-class CAM follows the teacher's;
          = d( N(A_s),   N(up(M_t^y)) )   "ccm": CAAM-CAM matching (Wang et al.), the teacher's
                                                 target-class CAM supervises the student's class-agnostic map.

M^y is the CAM of the true class y, A the CAAM, N min-max normalisation over locations, ``up`` bilinear
resizing of the teacher's map to the student's h x w (teacher and student may have different backbones),
d the mean absolute ("l1") or mean squared ("l2") difference over locations, averaged over the batch.
The maps come from :mod:`fewshot_cam.models.cam`, the same functions the CAM-loss and the pictures use.
The student's CAM uses its head weight detached, as the CAM-loss does: the map term shapes the features,
the classifier is trained by L_ce and L_kd. Teacher maps are computed under ``torch.no_grad``.
A teacher of the student's own backbone is born-again self-distillation (RFS-distill, Tian et al., 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fewshot_cam.errors import UserError
from fewshot_cam.losses.camloss import DISTANCES
from fewshot_cam.models.cam import caam, minmax_normalize, target_cam

Distance = Literal["l1", "l2"]


@dataclass(frozen=True)
class DistillConfig:
    """Distillation from a frozen teacher checkpoint during pretraining (``pretrain --teacher --distill``)."""

    mode: Literal["none", "kd", "at", "ccm"] = "none"
    """"none"; "kd": L_ce + beta L_kd; "at": adds gamma * attention transfer; "ccm": adds gamma *
    CAAM-CAM matching."""

    teacher: str | None = None
    """Path of the teacher checkpoint (any backbone, same base classes); required unless mode is none."""

    beta: float = 1.0
    """Weight of L_kd. RFS-distill (Tian et al., ECCV 2020) uses 0.5 L_ce + 0.5 L_kd; with L_ce at weight 1
    the same balance is beta = 1."""

    gamma: float = 1.0
    """Weight of the map term L_map ("at", "ccm"); 1.0 as the CAM-loss weight alpha."""

    tau: float = 4.0
    """Softmax temperature of L_kd; 4 as in RFS-distill (``kd_T``)."""

    distance: Distance = "l1"
    """Distance between normalised maps: "l1" mean |a - b| or "l2" mean (a - b)^2 over locations."""

    def __post_init__(self) -> None:
        if self.mode != "none" and not self.teacher:
            raise UserError(f"distill.mode '{self.mode}' needs a teacher checkpoint (distill.teacher / --teacher)")
        if self.distance not in DISTANCES:
            raise UserError(f"unknown distill.distance '{self.distance}' (valid: {', '.join(DISTANCES)})")
        if self.tau <= 0 or self.beta < 0 or self.gamma < 0:
            raise UserError(f"distill needs tau > 0, beta >= 0, gamma >= 0; got {self.tau}, {self.beta}, {self.gamma}")


class TeacherOutput(NamedTuple):
    """What the losses need from the teacher on one batch."""

    logits: torch.Tensor  # (B, K)
    features: torch.Tensor  # (B, C_t, h_t, w_t)
    weight: torch.Tensor  # (K, C_t)


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, x: torch.Tensor) -> TeacherOutput:
    """Run the (eval-mode) teacher on images x: (B, 3, H, W) in [0, 1], without building a graph."""
    features = teacher.forward_features(x)  # (B, C_t, h_t, w_t)
    return TeacherOutput(teacher.forward_head(features), features, teacher.head.weight)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Hinton et al. (2015): tau^2 * KL(softmax(t / tau) || softmax(s / tau)), batch mean.

    student_logits, teacher_logits: (B, K). The teacher side is detached.
    """
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)  # (B, K)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / tau, dim=1)  # (B, K)
    return tau**2 * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def map_distance(a: torch.Tensor, b: torch.Tensor, distance: Distance) -> torch.Tensor:
    """Mean over locations and batch of |a - b| ("l1") or (a - b)^2 ("l2"). a, b: (B, h, w)."""
    if distance == "l1":
        return (a - b).abs().mean()
    if distance == "l2":
        return (a - b).pow(2).mean()
    raise UserError(f"unknown map distance '{distance}' (valid: {', '.join(DISTANCES)})")


@torch.no_grad()
def teacher_map(teacher_features: torch.Tensor, teacher_weight: torch.Tensor, target: torch.Tensor,
                size: tuple[int, int]) -> torch.Tensor:
    """N(up(M_t^y)): the teacher's target-class CAM resized to ``size`` (bilinear), then min-max normalised.

    teacher_features: (B, C_t, h_t, w_t); teacher_weight: (K, C_t); target: (B,) -> (B, *size) in [0, 1].
    """
    cam = target_cam(teacher_features, teacher_weight, target)  # (B, h_t, w_t)
    if tuple(cam.shape[-2:]) != tuple(size):
        cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]  # (B, h, w)
    return minmax_normalize(cam)


def at_loss(student_features: torch.Tensor, student_weight: torch.Tensor, teacher_features: torch.Tensor,
            teacher_weight: torch.Tensor, target: torch.Tensor, distance: Distance = "l1") -> torch.Tensor:
    """Attention transfer on CAMs (Zagoruyko & Komodakis, 2017; as compared in Wang et al., 2021):
    d(N(M_s^y), N(up(M_t^y))).

    student_features: (B, C_s, h, w); student_weight: (K, C_s) (detached here); teacher_features:
    (B, C_t, h_t, w_t); teacher_weight: (K, C_t); target: (B,) -> scalar.
    """
    student = minmax_normalize(target_cam(student_features, student_weight.detach(), target))  # (B, h, w)
    teacher = teacher_map(teacher_features, teacher_weight, target, student.shape[-2:])  # (B, h, w)
    return map_distance(student, teacher, distance)


def ccm_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, teacher_weight: torch.Tensor,
             target: torch.Tensor, distance: Distance = "l1") -> torch.Tensor:
    """CAAM-CAM matching (Wang et al., ICCV 2021): d(N(A_s), N(up(M_t^y))), A_s = sum_c f_c the student's CAAM.

    student_features: (B, C_s, h, w); teacher_features: (B, C_t, h_t, w_t); teacher_weight: (K, C_t);
    target: (B,) -> scalar.
    """
    student = minmax_normalize(caam(student_features))  # (B, h, w)
    teacher = teacher_map(teacher_features, teacher_weight, target, student.shape[-2:])  # (B, h, w)
    return map_distance(student, teacher, distance)


def distill_loss(logits: torch.Tensor, features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                 teacher: TeacherOutput, cfg: DistillConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """beta * L_kd + gamma * L_map (L_map only for "at" / "ccm"): the part of L added to L_ce.

    logits: (B, K) student; features: (B, C_s, h, w) student; weight: (K, C_s) student head weight;
    target: (B,). Returns (loss, parts) with detached parts "kd" and, for at/ccm, "at" or "ccm".
    """
    if cfg.mode == "none":
        return logits.new_zeros(()), {}
    if teacher.logits.shape != logits.shape:
        raise UserError(f"teacher logits {tuple(teacher.logits.shape)} do not match the student's "
                        f"{tuple(logits.shape)}: distillation needs the same base classes")
    parts = {"kd": kd_loss(logits, teacher.logits, cfg.tau)}
    if cfg.mode == "at":
        parts["at"] = at_loss(features, weight, teacher.features, teacher.weight, target, cfg.distance)
    elif cfg.mode == "ccm":
        parts["ccm"] = ccm_loss(features, teacher.features, teacher.weight, target, cfg.distance)
    loss = cfg.beta * parts["kd"]
    if cfg.mode in ("at", "ccm"):
        loss = loss + cfg.gamma * parts[cfg.mode]
    return loss, {k: v.detach() for k, v in parts.items()}
