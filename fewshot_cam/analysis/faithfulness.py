"""Faithfulness of attribution maps: does the model's confidence follow the pixels the map ranks high?

* **Average Drop / Increase in Confidence** (Chattopadhay et al., "Grad-CAM++", WACV 2018, Sec. 5.1):
  Y_i = the model's probability of the target class c on image i, O_i = on its explanation map
  E_i = image_i * map_i (the map in [0, 1], upsampled to the image);
  AD = (1/N) sum_i max(0, Y_i - O_i) / Y_i * 100 (lower is better),
  IC = (1/N) sum_i [Y_i < O_i] * 100 (higher is better).
  The paper calls Y the model's "score"; we use the softmax probability, as pytorch-grad-cam's
  ``ClassifierOutputSoftmaxTarget`` does. Images are multiplied in [0, 1] before our models'
  own normalisation (pytorch-grad-cam multiplies the normalised tensor it is given).
* **Deletion / insertion** (Petsiuk et al., "RISE", BMVC 2018, Sec. 4.1): pixels are taken in
  decreasing order of the map, ``step`` = ceil(H W / steps) at a time; deletion replaces them with
  the substrate (zeros, as in RISE's code, or each image's per-channel mean, ``deletion_fill="mean"``),
  insertion copies them from the image onto a blurred copy (RISE's Gaussian kernel, 11 x 11, sigma
  5, zero padding). The probability of class c after 0, step, 2 step, ... H W pixels gives a curve
  whose trapezoid area over an evenly spaced [0, 1] axis is the AUC (RISE's ``auc``): deletion low,
  insertion high is better. RISE explains the top-1 class; we explain the given target.

Every function is batched: all perturbed copies of all images go through the model ``batch_size`` at
a time on the images' device. ``score(x)``: (B, 3, H, W) floats in [0, 1] -> (B, K) logits.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

Score = Callable[[torch.Tensor], torch.Tensor]
FILLS = ("zeros", "mean")


def probabilities(score: Score, x: torch.Tensor, target: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """softmax(score(x))[i, target_i], ``batch_size`` images per pass. x: (B, 3, H, W) -> (B,)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = score(x[start : start + batch_size]).float()  # (b, K)
            t = target[start : start + batch_size].to(logits.device)
            out.append(logits.softmax(dim=1).gather(1, t[:, None])[:, 0])
    return torch.cat(out)


def confidence_change(score: Score, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                      batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: (drop, increased), drop = max(0, Y - O) / Y and increased = [Y < O], each (B,).
    x: (B, 3, H, W) in [0, 1], maps: (B, H, W) in [0, 1]; AD and IC are their means times 100."""
    y = probabilities(score, x, target, batch_size)  # (B,)
    o = probabilities(score, x * maps[:, None].to(x.dtype), target, batch_size)  # (B,)
    return (y - o).clamp(min=0) / y.clamp(min=torch.finfo(y.dtype).tiny), (o > y).float()


def rise_blur(x: torch.Tensor, klen: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's insertion substrate: each channel convolved with ``gaussian_filter`` of a klen x klen delta."""
    delta = np.zeros((klen, klen))
    delta[klen // 2, klen // 2] = 1.0
    kernel = torch.as_tensor(gaussian_filter(delta, sigma), dtype=x.dtype, device=x.device)
    weight = kernel.expand(x.shape[1], 1, klen, klen)  # (3, 1, k, k): depthwise
    return F.conv2d(x, weight, padding=klen // 2, groups=x.shape[1])


def pixel_counts(hw: int, steps: int, device: torch.device) -> torch.Tensor:
    """Pixels changed at each point of the curve: 0, step, 2 step, ..., hw (clipped). -> (P,)."""
    step = -(-hw // steps)
    return torch.arange(0, hw + step, step, device=device).clamp(max=hw)


def perturbation_curves(score: Score, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor, kind: str,
                        steps: int = 50, batch_size: int = 64, deletion_fill: str = "zeros") -> torch.Tensor:
    """Deletion or insertion curves: (B, P) probabilities of the target after each step (P = steps + 1
    when ``steps`` divides H W). x: (B, 3, H, W) in [0, 1]; maps: (B, H, W)."""
    b, _, h, w = x.shape
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)  # (B, HW) most salient first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=x.device).expand(b, -1))
    counts = pixel_counts(h * w, steps, x.device)  # (P,)
    if kind == "deletion":
        fill = torch.zeros_like(x) if deletion_fill == "zeros" else x.mean(dim=(2, 3), keepdim=True).expand_as(x)
        start, end = x, fill
    elif kind == "insertion":
        start, end = rise_blur(x), x
    else:
        raise ValueError(f"kind must be deletion or insertion, got {kind!r}")
    pairs = torch.cartesian_prod(torch.arange(b, device=x.device), torch.arange(len(counts), device=x.device))
    out = []
    with torch.no_grad():
        for chunk in pairs.split(batch_size):
            i, p = chunk[:, 0], chunk[:, 1]
            taken = (rank[i] < counts[p][:, None]).view(-1, 1, h, w)  # (n, 1, H, W)
            images = torch.where(taken, end[i], start[i])
            out.append(probabilities(score, images, target[i], batch_size))
    return torch.cat(out).view(b, len(counts))


def auc(curves: torch.Tensor) -> torch.Tensor:
    """RISE's area under each curve on an evenly spaced [0, 1] axis (trapezoids). (B, P) -> (B,)."""
    return (curves.sum(dim=1) - curves[:, 0] / 2 - curves[:, -1] / 2) / (curves.shape[1] - 1)


class Faithfulness:
    """Running AD, IC, deletion and insertion AUC: ``update(score, x, maps, target)`` per batch,
    ``summary()`` at the end (means over every image seen)."""

    def __init__(self, steps: int = 50, batch_size: int = 64, deletion_fill: str = "zeros") -> None:
        if deletion_fill not in FILLS:
            raise ValueError(f"deletion_fill must be one of {FILLS}, got {deletion_fill!r}")
        self.steps, self.batch_size, self.deletion_fill = steps, batch_size, deletion_fill
        self.values: dict[str, list[torch.Tensor]] = {k: [] for k in ("drop", "increase", "deletion", "insertion")}

    def update(self, score: Score, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor) -> None:
        """x: (B, 3, H, W) in [0, 1]; maps: (B, H, W) in [0, 1]; target: (B,) class indices of ``score``."""
        maps = maps.to(x.device, x.dtype)
        drop, increase = confidence_change(score, x, maps, target, self.batch_size)
        self.values["drop"].append(drop.cpu())
        self.values["increase"].append(increase.cpu())
        for kind in ("deletion", "insertion"):
            curves = perturbation_curves(score, x, maps, target, kind, self.steps, self.batch_size, self.deletion_fill)
            self.values[kind].append(auc(curves).cpu())

    def summary(self) -> dict:
        """``average_drop``, ``increase_in_confidence`` (%), ``deletion_auc``, ``insertion_auc`` (0-1), ``n``."""
        mean = {k: float(torch.cat(v).mean()) if v else float("nan") for k, v in self.values.items()}
        return {"average_drop": 100.0 * mean["drop"], "increase_in_confidence": 100.0 * mean["increase"],
                "deletion_auc": mean["deletion"], "insertion_auc": mean["insertion"],
                "n": sum(len(v) for v in self.values["drop"]), "steps": self.steps, "deletion_fill": self.deletion_fill}
