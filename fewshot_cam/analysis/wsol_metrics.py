"""Threshold-free localisation metrics of Choe et al., "Evaluating Weakly Supervised Object
Localization Methods Right", CVPR 2020 (their code: clovaai/wsolevaluation, ``evaluation.py``).

A fixed threshold (CAM's 20% of the max, :mod:`.localization`) favours whichever method suits it;
both metrics here sweep the threshold instead. Maps are min-max normalised to [0, 1] per image first
(as :func:`.attribution.attribute` returns them); thresholds are ``THRESHOLDS`` = 0, 0.01, ..., 0.99
(their ``cam_curve_interval`` 0.01).

* **MaxBoxAccV2**: for each threshold t, the boxes of *all* connected components of {map > t}
  (their ``multi_contour_eval``; 8-connectivity, as OpenCV's outer contours); an image is localised
  at (t, delta) when the best IoU of any of its boxes with the ground-truth box is >= delta.
  BoxAcc(t, delta) = % of images localised; MaxBoxAcc(delta) = max_t BoxAcc(t, delta), each delta
  with its own best t; MaxBoxAccV2 = the mean of MaxBoxAcc over delta in {0.3, 0.5, 0.7}.
* **PxAP**: pixel average precision of the maps against the foreground masks, pooled over every
  pixel of every image: precision and recall of {map >= t} at each threshold, AP = sum_t P(t) (R(t) -
  R(t+)), from per-bin pixel histograms as in their ``MaskEvaluator``. Where every distinct map
  value falls in its own bin this equals ``sklearn.metrics.average_precision_score`` on the pixels.

Where we differ from their code: the ground-truth box is the tight box of the mask's foreground
(our data have masks, not annotated boxes); component boxes are tight inclusive boxes, whereas their
``cv2.boundingRect`` box (x, y, x + w, y + h) is one pixel larger to the right and bottom; we use
connected components (scipy.ndimage.label) rather than ``cv2.findContours(RETR_TREE)``, whose
extra hole contours lie inside an outer box; and the map is thresholded as floats, not after
quantising it to uint8.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from fewshot_cam.analysis.localization import mask_box

THRESHOLDS = np.arange(100) / 100.0  # (T,)
IOU_THRESHOLDS = (0.3, 0.5, 0.7)
_PLANE = np.zeros((3, 3, 3, 3), dtype=bool)
_PLANE[1, 1] = True  # 8-connected within each (image, threshold) plane, never across them


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def component_boxes(maps: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """Boxes of every 8-connected component of {map > t}, all images and thresholds in one labelling.

    maps: (B, H, W) in [0, 1] -> (M, 6) int64 rows (image, threshold index, y0, x0, y1, x1), inclusive.
    """
    binary = maps[:, None] > thresholds[None, :, None, None]  # (B, T, H, W)
    labels, n = ndimage.label(binary, structure=_PLANE)
    if n == 0:
        return np.zeros((0, 6), dtype=np.int64)
    return np.array([(s[0].start, s[1].start, s[2].start, s[3].start, s[2].stop - 1, s[3].stop - 1)
                     for s in ndimage.find_objects(labels)], dtype=np.int64)


def boxes_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of inclusive pixel boxes (y0, x0, y1, x1), row by row: a, b (M, 4) -> (M,)."""
    h = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1
    w = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1
    inter = np.clip(h, 0, None) * np.clip(w, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0] + 1) * (r[:, 3] - r[:, 1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def best_box_iou(maps, boxes: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """maps: (B, H, W) in [0, 1]; boxes: (B, 4) ground truth -> (B, T): the best IoU over the
    component boxes of each image at each threshold (0 where nothing exceeds t)."""
    maps = _numpy(maps).astype(np.float64)
    found = component_boxes(maps, thresholds)  # (M, 6)
    best = np.zeros((len(maps), len(thresholds)))
    if len(found):
        ious = boxes_iou(found[:, 2:], boxes[found[:, 0]])
        np.maximum.at(best, (found[:, 0], found[:, 1]), ious)
    return best


class MaxBoxAccV2:
    """Running MaxBoxAccV2: ``update(maps, masks)`` per batch, ``summary()`` at the end.

    Images with an empty mask have no box and are skipped (``skipped``). ``chunk`` images are
    labelled at once (memory: chunk x T x H x W labels).
    """

    def __init__(self, thresholds: np.ndarray = THRESHOLDS, iou_thresholds=IOU_THRESHOLDS, chunk: int = 8) -> None:
        self.thresholds, self.iou_thresholds, self.chunk = np.asarray(thresholds), tuple(iou_thresholds), chunk
        self.best: list[np.ndarray] = []  # (b, T) per batch
        self.skipped = 0

    def update(self, maps, masks) -> None:
        """maps: (B, H, W) in [0, 1]; masks: (B, H, W) bool foreground, same resolution."""
        maps, masks = _numpy(maps), _numpy(masks).astype(bool)
        if maps.shape != masks.shape:
            raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
        truth = [mask_box(m) for m in masks]
        keep = np.array([t is not None for t in truth], dtype=bool)
        self.skipped += int((~keep).sum())
        boxes = np.array([t for t in truth if t is not None], dtype=np.int64).reshape(-1, 4)
        maps = maps[keep]
        for start in range(0, len(maps), self.chunk):
            sel = slice(start, start + self.chunk)
            self.best.append(best_box_iou(maps[sel], boxes[sel], self.thresholds))

    def box_acc(self) -> np.ndarray:
        """(len(iou_thresholds), T): BoxAcc(t, delta) in %."""
        best = np.concatenate(self.best) if self.best else np.zeros((0, len(self.thresholds)))
        return 100.0 * (best[None] >= np.array(self.iou_thresholds)[:, None, None]).mean(axis=1)

    def summary(self) -> dict:
        """``maxboxacc_v2`` (%), ``maxboxacc`` {delta: %}, ``best_threshold`` {delta: t}, ``n``, ``skipped``."""
        n = sum(len(b) for b in self.best)
        if n == 0:
            return {
                "maxboxacc_v2": float("nan"),
                "maxboxacc": {},
                "best_threshold": {},
                "n": 0,
                "skipped": self.skipped,
            }
        acc = self.box_acc()  # (D, T)
        per = {f"{d:g}": float(acc[i].max()) for i, d in enumerate(self.iou_thresholds)}
        at = {f"{d:g}": float(self.thresholds[acc[i].argmax()]) for i, d in enumerate(self.iou_thresholds)}
        return {"maxboxacc_v2": float(np.mean(list(per.values()))), "maxboxacc": per, "best_threshold": at,
                "n": n, "skipped": self.skipped}


class PxAP:
    """Running pixel average precision (%): ``update(maps, masks)``, ``summary()``.

    Histograms of map values of foreground and background pixels over the threshold bins (right
    edges 1, 2, 3 as in their code, so a value of exactly 1 has a bin above 0.99's).
    """

    def __init__(self, thresholds: np.ndarray = THRESHOLDS) -> None:
        self.edges = np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
        self.fg = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.bg = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def update(self, maps, masks) -> None:
        """maps: (B, H, W) in [0, 1]; masks: (B, H, W) bool, same resolution."""
        maps, masks = _numpy(maps).astype(np.float64), _numpy(masks).astype(bool)
        if maps.shape != masks.shape:
            raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
        self.fg += np.histogram(maps[masks], bins=self.edges)[0]
        self.bg += np.histogram(maps[~masks], bins=self.edges)[0]

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(precision, recall) at each threshold from the highest bin down, each (T + 3,)."""
        tp, fp = self.fg[::-1].cumsum(), self.bg[::-1].cumsum()  # pixels >= each bin's left edge
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
            recall = tp / self.fg.sum() if self.fg.sum() else np.zeros_like(tp, dtype=np.float64)
        return precision, recall

    def summary(self) -> dict:
        """``pxap`` (%, nan without foreground pixels) and the pixel counts it rests on."""
        precision, recall = self.curve()
        ap = (
            float((precision[1:] * np.diff(recall)).sum() + precision[0] * recall[0]) if self.fg.sum() else float("nan")
        )
        return {
            "pxap": 100.0 * ap,
            "foreground_pixels": int(self.fg.sum()),
            "pixels": int(self.fg.sum() + self.bg.sum()),
        }
