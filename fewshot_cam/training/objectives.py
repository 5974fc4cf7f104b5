"""The pretraining objective of one batch, assembled from the configured losses:

    L = L_ce [+ alpha L_cam]            (Wang et al., ICCV 2021; ``loss``)
        [+ (w_ce - 1) L_ce + beta L_kd + gamma L_map]   (distillation from a frozen teacher; ``distill``)
        [+ L_saol]                      (SAOL head, Kim et al., CVPR 2020; ``saol``)

L_ce, CAM-loss and distillation see the clean batch; with a SAOL head, a CutMix copy of the batch
goes through the same forward (``torch.cat([x, x~])``, one forward per step, as DDP wants) and feeds
the CutMix terms of L_saol. CAM-loss and the student's CAMs use ``head.weight`` (a SAOL head's
auxiliary GAP-FC weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from fewshot_cam.losses.camloss import LossConfig, total_loss
from fewshot_cam.losses.distill import MAP_TERMS, DistillConfig, distill_loss, teacher_outputs
from fewshot_cam.losses.saol import SAOLLossConfig, cutmix, saol_total_loss
from fewshot_cam.models.saol import SAOL_HEADS

SAOL_PARTS = ("self_distill", "aux_ce", "cutmix_ce", "spatial_ce", "paste", "consistency")
"""Parts of L_saol; the CutMix ones are 0 on steps without CutMix (``saol.cutmix_prob`` < 1)."""


class FeaturesAndHead(nn.Module):
    """``forward(x) -> (features (B, C, h, w), head outputs, stages)``: one forward for every loss term.

    Head outputs: ``forward_all`` for a SAOL head, else ``{"logits": (B, K)}``; a head that reads the
    backbone's stages gets all of them, ``features`` is the last. ``stages``: every stage's map when
    ``keep_stages`` (Zagoruyko & Komodakis attention transfer) or the head reads them, else None. This is
    the module DistributedDataParallel wraps, so its gradients are all-reduced.
    """

    def __init__(self, model: nn.Module, keep_stages: bool = False) -> None:
        super().__init__()
        self.model = model
        self.keep_stages = keep_stages

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[torch.Tensor] | None]:
        stages = None
        if self.model.head_takes_stages or self.keep_stages:
            stages = self.model.forward_stages(x)  # [(B, C_i, h_i, w_i)]
            features = stages[-1]
        else:
            features = self.model.forward_features(x)  # (B, C, h, w)
        head_input = stages if self.model.head_takes_stages else features
        if isinstance(self.model.head, SAOL_HEADS):
            return features, self.model.head.forward_all(head_input), stages
        return features, {"logits": self.model.forward_head(head_input)}, stages  # (B, K)


@dataclass(frozen=True)
class Objective:
    """What L needs besides the batch: the loss configs, the student's head and the frozen teacher."""

    loss: LossConfig
    head: nn.Module
    distill: DistillConfig = DistillConfig()
    saol: SAOLLossConfig = SAOLLossConfig()
    teacher: nn.Module | None = None

    @property
    def is_saol(self) -> bool:
        return isinstance(self.head, SAOL_HEADS)

    @property
    def part_names(self) -> tuple[str, ...]:
        """Names of the logged parts, in a fixed order (the same on every rank)."""
        names = ("ce", "cam", "alpha")
        if self.distill.mode != "none":
            names += ("kd",) + ((self.distill.mode,) if self.distill.mode in MAP_TERMS else ())
        return names + (SAOL_PARTS if self.is_saol else ())


def objective_loss(
    objective: Objective, forward: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int,
    generator: torch.Generator | None = None, mix: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """L on the batch x: (B, 3, H, W), y: (B,); ``epoch`` 0-based. ``mix``: add a CutMix copy (SAOL only),
    its boxes drawn from ``generator``. Returns (loss, detached parts, clean logits (B, K))."""
    b = len(y)
    mixing = objective.is_saol and mix
    if mixing:
        mixed_x, mask, perm, lam = cutmix(x, generator)
        x = torch.cat([x, mixed_x])  # (2B, 3, H, W)
    features, out, stages = forward(x)  # (B or 2B, C, h, w), head outputs, stage maps or None
    features = features[:b]  # (B, C, h, w)
    stages = None if stages is None else [s[:b] for s in stages]
    clean = {k: v[:b] for k, v in out.items()}
    logits = clean["logits"]  # (B, K)
    weight = objective.head.weight  # (K, C)
    loss, parts = total_loss(logits, features, weight, y, objective.loss, epoch)
    if objective.teacher is not None:
        zk = objective.distill.mode == "zk-at"
        teacher = teacher_outputs(objective.teacher, x[:b], stages=zk)
        extra, extra_parts = distill_loss(logits, features, weight, y, teacher, objective.distill, stages)
        loss, parts = loss + extra, parts | extra_parts
    if objective.is_saol:
        if mixing:
            mixed = {k: v[b:] for k, v in out.items()}
            extra, extra_parts = saol_total_loss(clean, y, objective.saol, mixed, mask, perm, lam)
        else:  # the paste head stays in the graph (zero gradient), so DDP sees every parameter used
            extra, extra_parts = saol_total_loss(clean, y, objective.saol)
            extra = extra + 0.0 * clean["paste_logits"].sum()
        loss, parts = loss + extra, parts | extra_parts
    return loss, parts, logits
