"""SAOL, the Spatially Attentive Output Layer (Kim, Baek & Kim, CVPR 2020), as a classification head.

    y_k = sum_{x,y} A(x, y) S_k(x, y),    A = softmax_{x,y}( conv1x1(relu(conv3x3(f_L))) ),

with S (B, K, h, w) the spatial logits and A (B, h, w) the spatial attention from the last feature
map f_L. S comes from multi-scale maps combined like a segmentation decoder: each level goes through a
1x1 conv + ReLU, is resized (bilinear) to the last map's h x w, the levels are concatenated and a 3x3
conv-BN-ReLU then a 1x1 conv give S. A 1x1 conv on the same fused map predicts which locations were
pasted by CutMix (the self-supervised paste loss). A GAP-FC head is trained alongside by
self-distillation from the SAOL output; its weight is ``.weight``, so CAM-loss and CAM pictures based on
(features, weight) keep working. At inference only y (``forward``) is used; ``class_maps`` gives S, the
maps the analysis draws for SAOL models.

Multi-scale input. :class:`FewShotClassifier` hands the head only the last map, and a head must fit
every backbone, so the levels are by default a pooling pyramid of that map (the pyramid pooling module of
PSPNet, Zhao et al., CVPR 2017): f_L itself plus ``adaptive_avg_pool(f_L, s)`` for s in ``pyramid``.
A backbone that exposes intermediate maps can instead pass a list [f_1, ..., f_L] (build the head with
``in_channels`` = their channel counts); then those maps are the levels, as in the paper.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

Features = torch.Tensor | Sequence[torch.Tensor]


def _resize(maps: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """maps: (B, C, h', w') -> (B, C, *size), bilinear; unchanged if already that size."""
    if maps.shape[-2:] == size:
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


class SAOLHead(nn.Module):
    """SAOL head over ``num_classes`` classes; see the module docstring for the formula."""

    def __init__(self, in_channels: int | Sequence[int], num_classes: int, hidden: int | None = None,
                 pyramid: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        if isinstance(in_channels, int):  # one map: f_L plus its pooled pyramid
            levels = (in_channels,) * (1 + len(pyramid))
            self.pyramid = tuple(pyramid)
        else:  # a list of maps from the backbone, the last one f_L
            levels = tuple(in_channels)
            self.pyramid = None
        last = levels[-1]
        hidden = hidden or max(last // 4, 8)
        self.reduce = nn.ModuleList(nn.Sequential(nn.Conv2d(c, hidden, 1), nn.ReLU(inplace=True)) for c in levels)
        self.fuse = nn.Sequential(
            nn.Conv2d(hidden * len(levels), hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.spatial = nn.Conv2d(hidden, num_classes, 1)
        self.paste = nn.Conv2d(hidden, 1, 1)
        self.attention = nn.Sequential(
            nn.Conv2d(last, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1)
        )
        nn.init.zeros_(self.attention[-1].weight)  # uniform attention at the start: y = mean of S, like GAP
        nn.init.zeros_(self.attention[-1].bias)
        self.fc = nn.Linear(last, num_classes)  # the GAP-FC head trained alongside

    @property
    def weight(self) -> torch.Tensor:
        """(K, C) weight of the auxiliary GAP-FC head: the CAM weights for CAM-loss and distillation."""
        return self.fc.weight

    def levels(self, features: Features) -> list[torch.Tensor]:
        """The decoder's inputs: [f_L, pool_s(f_L), ...] for one map, the given list otherwise."""
        if isinstance(features, torch.Tensor):
            return [features] + [F.adaptive_avg_pool2d(features, s) for s in self.pyramid]
        return list(features)

    def _last(self, features: Features) -> torch.Tensor:
        return features if isinstance(features, torch.Tensor) else features[-1]

    def forward_all(self, features: Features) -> dict[str, torch.Tensor]:
        """features: f_L (B, C, h, w), or a list of maps ending with f_L. Returns
        logits (B, K), spatial_logits (B, K, h, w), attention (B, h, w) summing to 1 per image,
        aux_logits (B, K) of the GAP-FC head, paste_logits (B, h, w)."""
        last = self._last(features)
        size = last.shape[-2:]
        reduced = [_resize(r(f), size) for r, f in zip(self.reduce, self.levels(features))]  # (B, hidden, h, w) each
        fused = self.fuse(torch.cat(reduced, dim=1))  # (B, hidden, h, w)
        spatial = self.spatial(fused)  # (B, K, h, w)
        scores = self.attention(last).flatten(1)  # (B, h*w)
        attention = scores.softmax(dim=1).view(last.shape[0], *size)  # (B, h, w)
        logits = torch.einsum("bkhw,bhw->bk", spatial, attention)  # (B, K)
        return {
            "logits": logits,
            "spatial_logits": spatial,
            "attention": attention,
            "aux_logits": self.fc(last.mean(dim=(2, 3))),
            "paste_logits": self.paste(fused)[:, 0],
        }

    def forward(self, features: Features) -> torch.Tensor:
        """features -> SAOL logits (B, K), the attention-weighted sum of the spatial logits."""
        return self.forward_all(features)["logits"]

    def class_maps(self, features: Features) -> torch.Tensor:
        """features -> spatial logits S (B, K, h, w), float32: SAOL's class maps."""
        return self.forward_all(features)["spatial_logits"].float()
