"""SAOL, the Spatially Attentive Output Layer (Kim, Baek & Kim, CVPR 2020), as classification heads.

``SAOLHead`` ("saol", the paper, Eq. 2). With S (B, K, h, w) the spatial logits and A (B, h, w) the
spatial attention,

    y_k = sum_{x,y} A(x, y) softmax_k(S(x, y))_k,    A = softmax_{x,y}( conv1x1(relu(conv3x3(f_L))) ),

so y is a probability vector (an attention-weighted mean of per-location class probabilities) and the
training loss is -log y_target. ``forward`` returns log y, so that cross-entropy on it is exactly that
loss and argmax / softmax are unchanged (softmax(log y) = y). S comes from a decoder over the
multi-scale maps of the backbone's stages [f_1, ..., f_L] (``forward_stages``): each of the last
``levels`` stages goes through a 1x1 conv + ReLU, is resized to f_L's h x w (area average when larger,
bilinear when smaller), the levels are concatenated and a 3x3 conv-BN-ReLU then a 1x1 conv give S.
A is computed from the last map f_L alone. A GAP-FC head on f_L is trained alongside by
self-distillation from y (``aux_logits``); its weight is ``.weight``, so CAM-loss and distillation
based on (features, weight) keep working. Inference uses y alone; ``class_maps`` gives S.
Where we choose: the paper's decoder widths and output resolution follow its ImageNet/CIFAR
networks; here the hidden width is max(C_L / 4, 8) and S has f_L's resolution.

``SAOLRawLogitPSPHead`` ("saol-rawlogit-psp", this project's earlier variant, not the paper): the
output is the attention-weighted sum of the *raw* spatial logits, sum_xy A S_k, and the decoder's levels
are a pooling pyramid of the last map (PSPNet's pyramid pooling, Zhao et al., CVPR 2017): f_L plus
``adaptive_avg_pool(f_L, s)`` for s in ``pyramid``. It reads f_L only.

Both heads also predict which cells a CutMix paste covered (``paste_logits``), used only by the
optional, non-paper paste-region loss.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

Features = torch.Tensor | Sequence[torch.Tensor]


def _resize(maps: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """maps: (B, C, h', w') -> (B, C, *size): area average when larger, bilinear when smaller."""
    if maps.shape[-2:] == size:
        return maps
    if maps.shape[-2] >= size[0] and maps.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(maps, size)
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


class _Decoder(nn.Module):
    """Levels (B, c_i, h_i, w_i) -> fused (B, hidden, h, w) at ``size``: 1x1 conv + ReLU each, resize,
    concatenate, 3x3 conv-BN-ReLU."""

    def __init__(self, levels: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.reduce = nn.ModuleList(nn.Sequential(nn.Conv2d(c, hidden, 1), nn.ReLU(inplace=True)) for c in levels)
        self.fuse = nn.Sequential(
            nn.Conv2d(hidden * len(levels), hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )

    def forward(self, maps: Sequence[torch.Tensor], size: torch.Size) -> torch.Tensor:
        reduced = [_resize(r(f), size) for r, f in zip(self.reduce, maps)]  # (B, hidden, h, w) each
        return self.fuse(torch.cat(reduced, dim=1))  # (B, hidden, h, w)


class _SAOLBase(nn.Module):
    """Decoder, spatial-logit, paste, attention and GAP-FC layers shared by both heads."""

    def __init__(self, levels: Sequence[int], num_classes: int, hidden: int | None) -> None:
        super().__init__()
        last = levels[-1]
        hidden = hidden or max(last // 4, 8)
        self.decoder = _Decoder(levels, hidden)
        self.spatial = nn.Conv2d(hidden, num_classes, 1)
        self.paste = nn.Conv2d(hidden, 1, 1)
        self.attention = nn.Sequential(
            nn.Conv2d(last, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1)
        )
        nn.init.zeros_(self.attention[-1].weight)  # uniform attention at the start
        nn.init.zeros_(self.attention[-1].bias)
        self.fc = nn.Linear(last, num_classes)  # the GAP-FC head trained alongside

    @property
    def weight(self) -> torch.Tensor:
        """(K, C) weight of the auxiliary GAP-FC head: the CAM weights for CAM-loss and distillation."""
        return self.fc.weight

    def levels(self, features: Features) -> list[torch.Tensor]:
        raise NotImplementedError

    def combine(self, spatial: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """spatial (B, K, h, w), attention (B, h, w) -> the head's output logits (B, K)."""
        raise NotImplementedError

    def forward_all(self, features: Features) -> dict[str, torch.Tensor]:
        """features: the stage maps [f_1, ..., f_L] (or f_L alone). Returns logits (B, K) (the output),
        spatial_logits S (B, K, h, w), attention A (B, h, w) summing to 1 per image, aux_logits (B, K)
        of the GAP-FC head, paste_logits (B, h, w)."""
        last = features if isinstance(features, torch.Tensor) else features[-1]
        size = last.shape[-2:]
        fused = self.decoder(self.levels(features), size)  # (B, hidden, h, w)
        spatial = self.spatial(fused)  # (B, K, h, w)
        scores = self.attention(last).flatten(1)  # (B, h*w)
        attention = scores.float().softmax(dim=1).view(last.shape[0], *size)  # (B, h, w)
        return {
            "logits": self.combine(spatial, attention),
            "spatial_logits": spatial,
            "attention": attention,
            "aux_logits": self.fc(last.mean(dim=(2, 3))),
            "paste_logits": self.paste(fused)[:, 0],
        }

    def forward(self, features: Features) -> torch.Tensor:
        """features -> the head's output logits (B, K)."""
        return self.forward_all(features)["logits"]

    def class_maps(self, features: Features) -> torch.Tensor:
        """features -> spatial logits S (B, K, h, w), float32: SAOL's class maps."""
        return self.forward_all(features)["spatial_logits"].float()


def saol_output(spatial: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """SAOL Eq. 2: log sum_xy A(x, y) softmax_k(S(x, y)). spatial: (B, K, h, w); attention: (B, h, w)
    summing to 1 -> log-probabilities (B, K), computed as a log-sum-exp (stable), in float32."""
    log_p = F.log_softmax(spatial.float(), dim=1)  # (B, K, h, w)
    log_a = attention.float().clamp_min(1e-30).log()[:, None]  # (B, 1, h, w)
    return torch.logsumexp((log_p + log_a).flatten(2), dim=2)  # (B, K)


class SAOLHead(_SAOLBase):
    """SAOL as in the paper (see the module docstring). ``in_channels``: the backbone's stage channels
    (an int: a single map, then the decoder sees f_L only); ``levels``: how many of the last stages
    the decoder reads."""

    def __init__(self, in_channels: int | Sequence[int], num_classes: int, hidden: int | None = None,
                 levels: int = 3) -> None:
        stages = (in_channels,) if isinstance(in_channels, int) else tuple(in_channels)
        n_levels = min(levels, len(stages))
        super().__init__(stages[-n_levels:], num_classes, hidden)
        self.n_levels = n_levels

    def levels(self, features: Features) -> list[torch.Tensor]:
        maps = [features] if isinstance(features, torch.Tensor) else list(features)
        return maps[-self.n_levels:]

    def combine(self, spatial: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return saol_output(spatial, attention)


class SAOLRawLogitPSPHead(_SAOLBase):
    """This project's earlier SAOL variant (not the paper): y_k = sum_xy A S_k over raw spatial logits,
    the decoder over a pooling pyramid of f_L (see the module docstring)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int | None = None,
                 pyramid: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__((in_channels,) * (1 + len(pyramid)), num_classes, hidden)
        self.pyramid = tuple(pyramid)

    def levels(self, features: Features) -> list[torch.Tensor]:
        last = features if isinstance(features, torch.Tensor) else features[-1]
        return [last] + [F.adaptive_avg_pool2d(last, s) for s in self.pyramid]

    def combine(self, spatial: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkhw,bhw->bk", spatial.float(), attention)  # (B, K)


SAOL_HEADS = (SAOLHead, SAOLRawLogitPSPHead)
"""Every SAOL head class (they share ``forward_all`` and the SAOL losses)."""
