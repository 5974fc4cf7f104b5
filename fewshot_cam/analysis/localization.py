"""Weakly supervised localisation from attribution maps (Zhou et al., "Learning Deep Features for
Discriminative Localization", CVPR 2016, Sec. 3).

A map is thresholded at ``fraction`` of its maximum (20% in the paper); the predicted box is the
bounding box of the largest connected component of the kept pixels (4-connectivity,
``scipy.ndimage.label``). With a ground-truth foreground mask, the image counts as localised when
IoU(predicted box, the mask's bounding box) >= 0.5; the pixel IoU of the thresholded map with the
mask is reported as well. Boxes are inclusive pixel ranges (y0, x0, y1, x1).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

Box = tuple[int, int, int, int]


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def threshold_map(heatmap, fraction: float = 0.2) -> np.ndarray:
    """(H, W) map -> (H, W) bool: pixels >= ``fraction`` * max (all pixels of an all-zero map)."""
    m = _numpy(heatmap).astype(np.float64)
    return m >= fraction * m.max()


def mask_box(mask) -> Box | None:
    """Tight bounding box of all True pixels of an (H, W) bool array; None if there are none."""
    ys, xs = np.nonzero(_numpy(mask))
    if ys.size == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())


def largest_component_box(binary) -> Box | None:
    """Bounding box of the largest 4-connected component of an (H, W) bool array (ties: lowest label)."""
    labels, n = ndimage.label(_numpy(binary))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]  # (n,) pixels per component
    return mask_box(labels == 1 + int(np.argmax(sizes)))


def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two inclusive pixel boxes (0 if either is None)."""
    if a is None or b is None:
        return 0.0
    h = min(a[2], b[2]) - max(a[0], b[0]) + 1
    w = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(h, 0) * max(w, 0)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def mask_iou(a, b) -> float:
    """Pixel IoU of two (H, W) bool arrays (0 when both are empty)."""
    a, b = _numpy(a).astype(bool), _numpy(b).astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


class Localization:
    """Running localisation metrics: ``update(maps, masks)`` per batch, ``summary()`` at the end.

    Images whose ground-truth mask is empty have no box to find and are skipped (counted in ``skipped``).
    """

    def __init__(self, fraction: float = 0.2, iou_threshold: float = 0.5) -> None:
        self.fraction, self.iou_threshold = fraction, iou_threshold
        self.box_ious: list[float] = []
        self.pixel_ious: list[float] = []
        self.skipped = 0

    def update(self, maps, masks) -> None:
        """maps: (B, H, W) attribution maps; masks: (B, H, W) bool ground truth, same resolution."""
        maps, masks = _numpy(maps), _numpy(masks).astype(bool)
        if maps.shape != masks.shape:
            raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
        for heatmap, mask in zip(maps, masks):
            truth = mask_box(mask)
            if truth is None:
                self.skipped += 1
                continue
            binary = threshold_map(heatmap, self.fraction)
            self.box_ious.append(box_iou(largest_component_box(binary), truth))
            self.pixel_ious.append(mask_iou(binary, mask))

    def summary(self) -> dict[str, float]:
        """``loc_acc`` (% of images with box IoU >= 0.5), ``mean_iou`` (pixel IoU, 0-1), ``n``, ``skipped``."""
        n = len(self.box_ious)
        hits = sum(iou >= self.iou_threshold for iou in self.box_ious)
        return {
            "loc_acc": 100.0 * hits / n if n else float("nan"),
            "mean_iou": float(np.mean(self.pixel_ious)) if n else float("nan"),
            "n": n,
            "skipped": self.skipped,
        }
