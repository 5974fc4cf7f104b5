"""Every number ``fewshot-cam cam`` reports for one checkpoint's maps: localisation at the fixed
threshold (:mod:`.localization`), MaxBoxAccV2 and PxAP (:mod:`.wsol_metrics`), and faithfulness
(:mod:`.faithfulness`), each with the number of images it rests on."""

from __future__ import annotations

import numpy as np
import torch

from fewshot_cam.analysis.attribution import top1
from fewshot_cam.analysis.cam_targets import Targeted
from fewshot_cam.analysis.faithfulness import Faithfulness
from fewshot_cam.analysis.localization import Localization
from fewshot_cam.analysis.wsol_metrics import MaxBoxAccV2, PxAP
from fewshot_cam.data.transforms import to_float


def localization_scores(maps, masks: np.ndarray, fraction: float = 0.2) -> dict:
    """maps, masks: (N, H, W) -> {"fixed": ..., "maxboxacc": ..., "pxap": ...}."""
    maps = maps.cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    out = {}
    for name, metric in (("fixed", Localization(fraction)), ("maxboxacc", MaxBoxAccV2()), ("pxap", PxAP())):
        metric.update(maps, masks)
        out[name] = metric.summary()
    return out


def faithfulness_scores(spec: Targeted, images: np.ndarray, maps: torch.Tensor, device: torch.device,
                        steps: int = 50, batch_size: int = 64, deletion_fill: str = "zeros") -> dict:
    """Faithfulness of ``maps`` (N, H, W) for ``spec``'s classes (top-1 when it has none), computed
    ``batch_size`` images at a time on ``device``; perturbed copies also go ``batch_size`` per pass."""
    metric = Faithfulness(steps, batch_size, deletion_fill)

    def score(x: torch.Tensor) -> torch.Tensor:
        return spec.scorer.forward(x)[1]  # (B, K) logits

    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size], device)  # (b, 3, H, W)
        classes = top1(spec.scorer, x) if spec.classes is None else spec.classes[start : start + batch_size]
        metric.update(score, x, maps[start : start + batch_size], classes)
    return metric.summary()
