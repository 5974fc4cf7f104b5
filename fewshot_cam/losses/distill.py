"""Knowledge distillation in pretraining:

    L = w_ce L_ce + beta * L_kd + gamma * L_map,

    L_kd  = tau^2 * KL( softmax(z_t / tau) || softmax(z_s / tau) )          (Hinton et al., 2015)
    L_map = d( N(M_s^y), N(up(M_t^y)) )  "at": the CAM-loss paper's L_at (Wang et al., ICCV 2021,
                                         Sec. 4.3): the student's target-class CAM follows the teacher's;
          = d( N(A_s),   N(up(M_t^y)) )  "ccm": CAAM-CAM matching (Wang et al.), the teacher's
                                         target-class CAM supervises the student's class-agnostic map;
          = sum_s mean (a_s^S - a_s^T)^2  "zk-at": attention transfer of Zagoruyko & Komodakis ("Paying
                                         More Attention to Attention", ICLR 2017), a(f) = normalize(
                                         mean_c f_c^2, flattened), over the backbone's stages.

M^y is the CAM of the true class y, A the CAAM, N min-max normalisation over locations, ``up`` bilinear
resizing of the teacher's map to the student's h x w (teacher and student may have different backbones),
d the mean absolute ("l1") or mean squared ("l2") difference over locations, averaged over the batch.
The maps come from :mod:`fewshot_cam.models.cam`, the same functions the CAM-loss and the pictures use.
The student's CAM uses its head weight detached, as the CAM-loss does: the map term shapes the features,
the classifier is trained by L_ce and L_kd. Teacher maps are computed under ``torch.no_grad``.

"at" is *not* Zagoruyko & Komodakis's attention transfer (which RFS and RepDistiller call
"attention"); that one is "zk-at", which follows RepDistiller's ``distiller_zoo/AT.py`` (p = 2): the
stages after the first (their ``feat[1:-1]``; for ResNet-12, blocks 2-4), the larger of two maps
average-pooled to the smaller's size, each stage's mean squared difference summed; RepDistiller weights
it by 1000 (``-b 1000``, our ``gamma``). A teacher of the student's own backbone with w_ce = beta = 0.5,
tau = 4 and mode "kd" is RFS-distill (Tian et al., ECCV 2020: ``train_distillation.py -r 0.5 -a 0.5``,
``kd_T`` 4), born-again self-distillation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fewshot_cam.errors import UserError, check_ranges
from fewshot_cam.losses.camloss import DISTANCES
from fewshot_cam.models.cam import caam, minmax_normalize, target_cam

Distance = Literal["l1", "l2"]

DISTILL_MODES: dict[str, str] = {
    "none": "no teacher",
    "kd": "L_kd only (Hinton et al.; RFS-distill)",
    "at": "L_kd + gamma L_at, the CAM-loss paper's CAM-to-CAM matching (not Zagoruyko & Komodakis)",
    "ccm": "L_kd + gamma CAAM-CAM matching (Wang et al., ICCV 2021)",
    "zk-at": "L_kd + gamma attention transfer of Zagoruyko & Komodakis (ICLR 2017) at the backbone's stages",
}
MAP_TERMS = ("at", "ccm", "zk-at")
"""Modes with a map term L_map (logged under the mode's name)."""


@dataclass(frozen=True)
class DistillConfig:
    """Distillation from a frozen teacher checkpoint during pretraining (``pretrain --teacher --distill``)."""

    mode: str = "none"
    """A key of ``DISTILL_MODES``: "none"; "kd": L_ce + beta L_kd; "at": adds gamma * the CAM-loss paper's
    L_at (CAM matching); "ccm": adds gamma * CAAM-CAM matching; "zk-at": adds gamma * Zagoruyko &
    Komodakis attention transfer at the backbone's stages."""

    teacher: str | None = None
    """Path of the teacher checkpoint (any backbone, same base classes); required unless mode is none."""

    ce_weight: float = 1.0
    """w_ce, the weight of L_ce while distilling (RFS's ``-r``; RFS-distill: 0.5)."""

    beta: float = 1.0
    """Weight of L_kd (RFS's ``-a``; RFS-distill: 0.5)."""

    gamma: float = 1.0
    """Weight of the map term L_map ("at", "ccm": 1.0 as the CAM-loss weight alpha; "zk-at": RepDistiller's 1000)."""

    tau: float = 4.0
    """Softmax temperature of L_kd; 4 as in RFS-distill (``kd_T``)."""

    distance: Distance = "l1"
    """Distance between normalised maps: "l1" mean |a - b| or "l2" mean (a - b)^2 over locations."""

    def __post_init__(self) -> None:
        if self.mode not in DISTILL_MODES:
            raise UserError(f"unknown distill.mode '{self.mode}' (valid: {', '.join(DISTILL_MODES)})")
        if self.mode != "none" and not self.teacher:
            raise UserError(f"distill.mode '{self.mode}' needs a teacher checkpoint (distill.teacher / --teacher)")
        if self.distance not in DISTANCES:
            raise UserError(f"unknown distill.distance '{self.distance}' (valid: {', '.join(DISTANCES)})")
        check_ranges("distill", self, {"tau": (0, None, True), "beta": (0, None), "gamma": (0, None),
                                       "ce_weight": (0, None)})


class TeacherOutput(NamedTuple):
    """What the losses need from the teacher on one batch."""

    logits: torch.Tensor  # (B, K)
    features: torch.Tensor  # (B, C_t, h_t, w_t)
    weight: torch.Tensor  # (K, C_t)
    stages: list[torch.Tensor] | None = None  # every stage's map, for "zk-at"


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, x: torch.Tensor, stages: bool = False) -> TeacherOutput:
    """Run the (eval-mode) teacher on images x: (B, 3, H, W) in [0, 1], without building a graph;
    ``stages``: keep every stage's map too."""
    if not stages and not teacher.head_takes_stages:
        features = teacher.forward_features(x)  # (B, C_t, h_t, w_t)
        return TeacherOutput(teacher.forward_head(features), features, teacher.head.weight)
    maps = teacher.forward_stages(x)
    head_input = maps if teacher.head_takes_stages else maps[-1]
    return TeacherOutput(teacher.forward_head(head_input), maps[-1], teacher.head.weight, maps if stages else None)


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
    """L_at of the CAM-loss paper (Wang et al., ICCV 2021, Sec. 4.3), which it calls attention transfer:
    d(N(M_s^y), N(up(M_t^y))), the student's target-class CAM against the teacher's. Not Zagoruyko &
    Komodakis's activation-based attention transfer: that is :func:`zk_at_loss`.

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


def zk_attention(f: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis's attention map (p = 2): normalize(mean_c f_c^2 flattened). (B, C, h, w) -> (B, h*w)."""
    return F.normalize(f.float().pow(2).mean(dim=1).flatten(1), dim=1)


def zk_at_loss(student_stages: list[torch.Tensor], teacher_stages: list[torch.Tensor]) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017; RepDistiller's ``AT(p=2)``):
    sum over the stages after the first of mean((a(f_s) - a(f_t))^2), the larger map of each pair
    average-pooled to the smaller's h x w first. Stage lists of equal length; teacher side detached."""
    if len(student_stages) != len(teacher_stages):
        raise UserError(f"zk-at needs as many stages in the student ({len(student_stages)}) as in the teacher "
                        f"({len(teacher_stages)})")
    total = student_stages[0].new_zeros((), dtype=torch.float32)
    for f_s, f_t in zip(student_stages[1:], teacher_stages[1:]):
        f_t = f_t.detach()
        if f_s.shape[-2:] != f_t.shape[-2:]:
            size = tuple(min(a, b) for a, b in zip(f_s.shape[-2:], f_t.shape[-2:]))
            f_s, f_t = F.adaptive_avg_pool2d(f_s, size), F.adaptive_avg_pool2d(f_t, size)
        total = total + (zk_attention(f_s) - zk_attention(f_t)).pow(2).mean()
    return total


def map_term(mode: str, features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, teacher: TeacherOutput,
             distance: Distance, stages: list[torch.Tensor] | None) -> torch.Tensor:
    """L_map of ``mode`` (one of ``MAP_TERMS``) -> scalar; ``stages``: the student's stage maps (zk-at)."""
    if mode == "at":
        return at_loss(features, weight, teacher.features, teacher.weight, target, distance)
    if mode == "ccm":
        return ccm_loss(features, teacher.features, teacher.weight, target, distance)
    if stages is None or teacher.stages is None:
        raise ValueError("zk-at needs the student's and the teacher's stage maps")
    return zk_at_loss(stages, teacher.stages)


def distill_loss(logits: torch.Tensor, features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                 teacher: TeacherOutput, cfg: DistillConfig, stages: list[torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(w_ce - 1) L_ce + beta * L_kd + gamma * L_map (L_map for ``MAP_TERMS``): the part of L added to
    the loop's L_ce, so that L_ce ends at weight w_ce.

    logits: (B, K) student; features: (B, C_s, h, w) student; weight: (K, C_s) student head weight;
    target: (B,); stages: the student's stage maps (zk-at). Returns (loss, parts) with detached parts
    "kd" and, for a map term, the mode's name.
    """
    if cfg.mode == "none":
        return logits.new_zeros(()), {}
    if teacher.logits.shape != logits.shape:
        raise UserError(f"teacher logits {tuple(teacher.logits.shape)} do not match the student's "
                        f"{tuple(logits.shape)}: distillation needs the same base classes")
    parts = {"kd": kd_loss(logits, teacher.logits, cfg.tau)}
    loss = cfg.beta * parts["kd"]
    if cfg.mode in MAP_TERMS:
        parts[cfg.mode] = map_term(cfg.mode, features, weight, target, teacher, cfg.distance, stages)
        loss = loss + cfg.gamma * parts[cfg.mode]
    if cfg.ce_weight != 1.0:
        loss = loss + (cfg.ce_weight - 1.0) * F.cross_entropy(logits.float(), target)
    return loss, {k: v.detach() for k, v in parts.items()}
