"""Training losses of SAOL (Kim, Baek & Kim, CVPR 2020) beside the cross-entropy of its output.

With a CutMix batch x~ = M * x[perm] + (1 - M) * x (Yun et al., ICCV 2019; M the paste mask, lam the
kept fraction 1 - mean(M)) and the SAOL head's outputs on the clean batch (``clean``) and on x~ (``mixed``):

    L_saol = w_sd   * tau^2 KL( softmax(y_saol / tau) || softmax(y_gap / tau) )  self-distillation to GAP-FC
           + w_aux  * CE(y_gap, y)                                               the GAP-FC head's own CE
           + w_mix  * [lam CE(y~, y) + (1 - lam) CE(y~, y[perm])]                CutMix CE of the output
           + w_sp   * mean_xy [m CE(S~(x,y), y[perm]) + (1 - m) CE(S~(x,y), y)]  location-wise CutMix labels
           + w_paste * BCE(P~, m)                                                (not in the paper)
           + w_cons * sum_xy m KL( softmax(S[perm](x,y)) || softmax(S~(x,y)) ) / sum_xy m   (not in the paper)

with m = M average-pooled to the feature resolution (the pasted fraction of each cell), P~ the head's
paste logits and S, S~ the spatial logits. The first four are the paper's: self-distillation of the
GAP-FC head from the SAOL output (weight 0.5), and the two CutMix losses, on the output and on every
location's spatial logits (the paper's location-specific self-supervision: a cell's label is the label
of the image that fills it). The paste-region BCE and the spatial consistency KL are this project's
additions, off (weight 0) unless a config sets them. The SAOL output and the clean spatial logits are
detached where they act as targets. The cross-entropy of the clean SAOL output, L_ce, is the training
loop's (for the paper head, -log y_target, since its output is log y).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fewshot_cam.errors import check_ranges
from fewshot_cam.losses.distill import kd_loss


@dataclass(frozen=True)
class SAOLLossConfig:
    """Weights of the SAOL training losses (used when ``model.head`` is "saol" or "saol-rawlogit-psp")."""

    self_distill: float = 0.5
    """w_sd: self-distillation from the SAOL output to the GAP-FC head."""

    aux_ce: float = 1.0
    """w_aux: cross-entropy of the GAP-FC head."""

    cutmix_ce: float = 1.0
    """w_mix: CutMix cross-entropy of the SAOL output on the mixed batch (area-weighted labels)."""

    spatial_ce: float = 1.0
    """w_sp: CutMix cross-entropy of every location's spatial logits against the label filling that cell."""

    paste: float = 0.0
    """w_paste: binary cross-entropy of the predicted paste map against the paste mask (not in the paper)."""

    consistency: float = 0.0
    """w_cons: KL between the mixed image's spatial logits inside the pasted region and the source's
    (not in the paper)."""

    tau: float = 1.0
    """Temperature of the self-distillation KL."""

    cutmix_prob: float = 1.0
    """Chance that a batch gets the CutMix terms (the clean terms apply to every batch)."""

    def __post_init__(self) -> None:
        weights = ("self_distill", "aux_ce", "cutmix_ce", "spatial_ce", "paste", "consistency")
        check_ranges("saol", self, {w: (0, None) for w in weights} | {"tau": (0, None, True), "cutmix_prob": (0, 1)})


def cutmix(images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """CutMix (Yun et al., ICCV 2019) with lam ~ Beta(1, 1), one box per image, batched.

    Image i gets, inside a box of area ~(1 - lam_i) H W with a uniform centre (clipped at the border),
    the same box of image perm[i]; perm is a random cyclic permutation, so no image is pasted into
    itself (for B > 1). images: (B, C, H, W) -> mixed (B, C, H, W), paste_mask (B, H, W) bool,
    perm (B,) long, lam (B,) float = 1 - paste_mask.mean(), the fraction of image i kept.
    """
    b, _, h, w = images.shape
    dev = generator.device
    order = torch.randperm(b, generator=generator, device=dev)
    perm = torch.empty_like(order)
    perm[order] = order.roll(1)  # one cycle through a random order: perm[i] != i
    ratio = torch.rand(b, generator=generator, device=dev).sqrt()  # side ratio sqrt(1 - lam)
    cy, cx = (torch.rand(2, b, generator=generator, device=dev) * torch.tensor([[h], [w]], device=dev)).long()
    half_h, half_w = (ratio * h / 2).long(), (ratio * w / 2).long()
    rows = torch.arange(h, device=dev)  # (H,)
    cols = torch.arange(w, device=dev)  # (W,)
    in_rows = (rows >= (cy - half_h)[:, None]) & (rows < (cy + half_h)[:, None])  # (B, H)
    in_cols = (cols >= (cx - half_w)[:, None]) & (cols < (cx + half_w)[:, None])  # (B, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :]).to(images.device)  # (B, H, W)
    perm = perm.to(images.device)
    mixed = torch.where(mask[:, None], images[perm], images)  # (B, C, H, W)
    lam = 1.0 - mask.float().mean(dim=(1, 2))  # (B,)
    return mixed, mask, perm, lam


def _cell_fraction(paste_mask: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """paste_mask: (B, H, W) bool -> (B, *size): the pasted fraction of each feature cell (adaptive average)."""
    return F.adaptive_avg_pool2d(paste_mask[:, None].float(), size)[:, 0]


def paste_region_loss(paste_logits: torch.Tensor, paste_mask: torch.Tensor) -> torch.Tensor:
    """SAOL's pasted-region prediction: BCE(sigmoid(P), m), m the pasted fraction of each feature cell.

    paste_logits: (B, h, w); paste_mask: (B, H, W) bool -> scalar, mean over cells and batch.
    """
    target = _cell_fraction(paste_mask, paste_logits.shape[-2:])  # (B, h, w)
    return F.binary_cross_entropy_with_logits(paste_logits.float(), target)


def spatial_consistency_loss(mixed_spatial: torch.Tensor, source_spatial: torch.Tensor,
                             paste_mask: torch.Tensor) -> torch.Tensor:
    """Inside the pasted region, the mixed image's spatial logits follow the source image's at the
    same locations: sum_xy m KL(softmax(S_src) || softmax(S_mix)) / sum_xy m, over the batch.

    mixed_spatial: (B, K, h, w) of the CutMix images; source_spatial: (B, K, h, w) of the source images
    (the clean batch's spatial logits indexed by ``perm``; detached here); paste_mask: (B, H, W) -> scalar.
    """
    weight = _cell_fraction(paste_mask, mixed_spatial.shape[-2:])  # (B, h, w)
    log_p_src = F.log_softmax(source_spatial.detach().float(), dim=1)  # (B, K, h, w)
    log_p_mix = F.log_softmax(mixed_spatial.float(), dim=1)  # (B, K, h, w)
    kl = (log_p_src.exp() * (log_p_src - log_p_mix)).sum(dim=1)  # (B, h, w)
    return (weight * kl).sum() / weight.sum().clamp_min(1e-6)


def self_distill_loss(saol_logits: torch.Tensor, aux_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Self-distillation from the SAOL output (detached, the teacher) to the GAP-FC head.

    tau^2 KL(softmax(saol / tau) || softmax(aux / tau)); saol_logits, aux_logits: (B, K) -> scalar.
    """
    return kd_loss(aux_logits, saol_logits, tau)


def cutmix_ce(logits: torch.Tensor, target: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """lam CE(logits, y) + (1 - lam) CE(logits, y[perm]), per image, batch mean. logits: (B, K); lam: (B,)."""
    ce_kept = F.cross_entropy(logits.float(), target, reduction="none")  # (B,)
    ce_pasted = F.cross_entropy(logits.float(), target[perm], reduction="none")  # (B,)
    return (lam * ce_kept + (1 - lam) * ce_pasted).mean()


def spatial_cutmix_ce(spatial: torch.Tensor, target: torch.Tensor, perm: torch.Tensor,
                      paste_mask: torch.Tensor) -> torch.Tensor:
    """mean over cells and batch of m CE(S~(x, y), y[perm]) + (1 - m) CE(S~(x, y), y), m the pasted
    fraction of the cell. spatial: (B, K, h, w) of the CutMix images; target, perm: (B,);
    paste_mask: (B, H, W) bool -> scalar."""
    m = _cell_fraction(paste_mask, spatial.shape[-2:])  # (B, h, w)
    log_p = F.log_softmax(spatial.float(), dim=1)  # (B, K, h, w)
    kept = -log_p.gather(1, target.view(-1, 1, 1, 1).expand(-1, 1, *m.shape[-2:]))[:, 0]  # (B, h, w)
    pasted = -log_p.gather(1, target[perm].view(-1, 1, 1, 1).expand(-1, 1, *m.shape[-2:]))[:, 0]  # (B, h, w)
    return (m * pasted + (1 - m) * kept).mean()


def saol_total_loss(clean: dict[str, torch.Tensor], target: torch.Tensor, cfg: SAOLLossConfig,
                    mixed: dict[str, torch.Tensor] | None = None, paste_mask: torch.Tensor | None = None,
                    perm: torch.Tensor | None = None, lam: torch.Tensor | None = None,
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_saol of the module docstring (without the loop's L_ce); the CutMix terms only when ``mixed`` is given.

    clean, mixed: :meth:`SAOLHead.forward_all` outputs on the clean and the CutMix batch; target: (B,);
    paste_mask, perm, lam: from :func:`cutmix`. Returns (loss, detached parts).
    """
    parts = {
        "self_distill": self_distill_loss(clean["logits"], clean["aux_logits"], cfg.tau),
        "aux_ce": F.cross_entropy(clean["aux_logits"].float(), target),
    }
    weights = {"self_distill": cfg.self_distill, "aux_ce": cfg.aux_ce}
    if mixed is not None:
        parts["cutmix_ce"] = cutmix_ce(mixed["logits"], target, perm, lam)
        parts["spatial_ce"] = spatial_cutmix_ce(mixed["spatial_logits"], target, perm, paste_mask)
        parts["paste"] = paste_region_loss(mixed["paste_logits"], paste_mask)
        source = clean["spatial_logits"][perm]  # (B, K, h, w): the pasted images' own spatial logits
        parts["consistency"] = spatial_consistency_loss(mixed["spatial_logits"], source, paste_mask)
        weights.update(cutmix_ce=cfg.cutmix_ce, spatial_ce=cfg.spatial_ce, paste=cfg.paste, consistency=cfg.consistency)
    loss = sum(weights[k] * v for k, v in parts.items())
    return loss, {k: v.detach() for k, v in parts.items()}
