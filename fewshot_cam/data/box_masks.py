"""Boxes <-> masks: draw annotated boxes at the split's image size, refine them with GrabCut, and turn
true masks into box masks (to measure what box coarseness does where the true mask is known).

A box (xmin, ymin, xmax, ymax) in an original of W x H pixels covers the continuous extent
[xmin, xmax + 1) x [ymin, ymax + 1) (pixel indices, inclusive, as ImageNet writes them). Squashed to
S x S (the few-shot sets squash, they do not crop) it becomes [xmin * S/W, (xmax + 1) * S/W) and the
same for y; a mask pixel is foreground when its centre lies inside. A box narrower than one output
pixel still marks the pixel holding its centre, so no annotated image ends up with an empty mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fewshot_cam.errors import UserError
from fewshot_cam.registry import Registry

GRABCUT_ITERATIONS = 5


def _axis(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """(B, n) bool: output pixels whose centre is in [lo, hi), or the centre pixel of a thin extent."""
    centres = np.arange(n) + 0.5
    inside = (centres >= lo[:, None]) & (centres < hi[:, None])
    middle = np.clip(((lo + hi) / 2).astype(int), 0, n - 1)
    inside[np.arange(len(lo)), middle] |= ~inside.any(1)
    return inside


def rasterize_boxes(boxes: np.ndarray, size: tuple[int, int], out: int) -> np.ndarray:
    """(out, out) bool: the union of ``boxes`` (B, 4) of a ``size`` = (W, H) original, squashed to out x out."""
    width, height = size
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, x1 = np.clip(boxes[:, 0], 0, width - 1), np.clip(boxes[:, 2], 0, width - 1) + 1
    y0, y1 = np.clip(boxes[:, 1], 0, height - 1), np.clip(boxes[:, 3], 0, height - 1) + 1
    cols = _axis(x0 * out / width, x1 * out / width, out)  # (B, out)
    rows = _axis(y0 * out / height, y1 * out / height, out)  # (B, out)
    return (rows[:, :, None] & cols[:, None, :]).any(0)  # (out, out)


def grabcut(image: np.ndarray, box_mask: np.ndarray, iterations: int = GRABCUT_ITERATIONS) -> np.ndarray:
    """GrabCut (Rother et al. 2004) initialised from boxes, as Xiao et al. (ICLR 2021) build ImageNet-9's
    foreground: outside every box is sure background, inside is probable foreground.

    image: (H, W, 3) uint8 RGB; box_mask: (H, W) bool -> (H, W) bool. We run it on the image as the split
    holds it (e.g. 84 x 84), not on the full-size original; a box covering the whole image (no background
    to learn from) or a cut that keeps nothing returns the box unchanged.
    """
    try:
        import cv2
    except ImportError:
        raise UserError("--refine grabcut needs OpenCV: pip install 'fewshot-cam[grabcut]'") from None
    if box_mask.all() or not box_mask.any():
        return box_mask
    cv2.setRNGSeed(0)
    labels = np.where(box_mask, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    cv2.grabCut(bgr, labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    cut = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return cut if cut.any() else box_mask


REFINES: Registry = Registry("mask refinement")
REFINES.register("box", lambda image, mask: mask, help="the union of the boxes (default)")
REFINES.register("grabcut", grabcut, help="GrabCut initialised from the boxes (needs opencv-python-headless)")


def component_boxes(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: each connected foreground region (8-connected) replaced by its box."""
    out = np.zeros_like(mask, bool)
    labelled, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    for box in ndimage.find_objects(labelled):
        if box is not None:
            out[box] = True
    return out


def bounding_box(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: the one box around all foreground (empty stays empty)."""
    out = np.zeros_like(mask, bool)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows):
        out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    return out


BOX_SHAPES: Registry = Registry("box shape")
BOX_SHAPES.register("component", component_boxes, help="a box around each connected foreground region")
BOX_SHAPES.register("image", bounding_box, help="one box around the whole foreground")


def boxes_from_masks(masks: np.ndarray, shape: str = "component") -> np.ndarray:
    """(N, H, W) bool true masks -> (N, H, W) bool box masks, the coarseness ImageNet's boxes have."""
    fn = BOX_SHAPES.get(shape)
    return np.stack([fn(m) for m in np.asarray(masks, bool)]) if len(masks) else np.zeros_like(masks, bool)
