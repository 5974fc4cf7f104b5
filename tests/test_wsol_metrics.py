"""MaxBoxAccV2 and PxAP (Choe et al., CVPR 2020) on hand-computed cases, OpenCV's contours and sklearn."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score

from fewshot_cam.analysis.localization import Localization
from fewshot_cam.analysis.wsol_metrics import THRESHOLDS, MaxBoxAccV2, PxAP, best_box_iou


def box_mask(y0, x0, y1, x1, size=8) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def hand_case() -> tuple[np.ndarray, np.ndarray]:
    """Three 8x8 images whose best IoU per threshold is worked out in the comments."""
    maps, masks = np.zeros((3, 8, 8)), np.stack([box_mask(0, 0, 1, 1), box_mask(0, 0, 2, 2), box_mask(0, 0, 1, 2)])
    # image 0: the 2x2 object (1.0) inside a 4x4 halo (0.7), a far 3x3 blob (0.3):
    #   t < 0.7 -> best component box is the 4x4 halo, IoU 4/16; t >= 0.7 -> the object, IoU 1
    maps[0, :4, :4], maps[0, :2, :2], maps[0, 5:, 5:] = 0.7, 1.0, 0.3
    # image 1: a 3x3 object at 0.5 with a 1.0 peak on a 0.1 floor:
    #   t < 0.1 -> whole image, IoU 9/64; 0.1 <= t < 0.5 -> IoU 1; t >= 0.5 -> the peak, IoU 1/9
    maps[1], maps[1, :3, :3], maps[1, 0, 0] = 0.1, 0.5, 1.0
    # image 2: a 2x5 map over a 2x3 object: IoU 6/10 at every threshold
    maps[2, :2, :5] = 1.0
    return maps, masks


def test_best_iou_per_threshold_by_hand():
    maps, masks = hand_case()
    boxes = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 1, 2]])
    best = best_box_iou(maps, boxes)
    t = THRESHOLDS
    assert best[0] == pytest.approx(np.where(t < 0.7, 4 / 16, 1.0))
    assert best[1] == pytest.approx(np.where(t < 0.1, 9 / 64, np.where(t < 0.5, 1.0, 1 / 9)))
    assert best[2] == pytest.approx(np.full(len(t), 0.6))


def test_maxboxacc_v2_by_hand_and_the_fixed_threshold_misses_it():
    maps, masks = hand_case()
    metric = MaxBoxAccV2()
    metric.update(maps[:2], masks[:2])
    metric.update(maps[2:], masks[2:])
    s = metric.summary()
    # delta 0.3 and 0.5: best 2 of 3 (images 1+2 at t in [0.1, 0.5), or 0+2 at t >= 0.7); 0.7: only one image
    assert s["maxboxacc"] == pytest.approx({"0.3": 200 / 3, "0.5": 200 / 3, "0.7": 100 / 3})
    assert s["maxboxacc_v2"] == pytest.approx((200 / 3 + 200 / 3 + 100 / 3) / 3)
    assert s["best_threshold"]["0.5"] == pytest.approx(0.1) and s["best_threshold"]["0.7"] == pytest.approx(0.1)
    assert s["n"] == 3
    fixed = Localization(0.2)  # CAM's 20%, largest component: image 0's halo wins, image 2's 0.6 passes
    fixed.update(maps, masks)
    assert fixed.summary()["loc_acc"] == pytest.approx(200 / 3)


def test_all_component_boxes_not_only_the_largest():
    """The bigger blob is the wrong one; the multi-contour box of the small one is exact."""
    maps = np.zeros((1, 8, 8))
    maps[0, :2, :2], maps[0, 4:, 4:] = 1.0, 0.9
    assert best_box_iou(maps, np.array([[0, 0, 1, 1]]))[0] == pytest.approx(np.ones(len(THRESHOLDS)))


def test_empty_masks_are_skipped():
    metric = MaxBoxAccV2()
    metric.update(np.random.default_rng(0).random((2, 8, 8)), np.zeros((2, 8, 8), dtype=bool))
    assert metric.summary()["n"] == 0 and metric.summary()["skipped"] == 2


def opencv_best_iou(heatmap: np.ndarray, box, thresholds) -> np.ndarray:
    """Oracle: OpenCV outer contours (RETR_CCOMP top level = every 8-connected component) per threshold."""
    out = []
    for t in thresholds:
        binary = (heatmap > t).astype(np.uint8)
        contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        best = 0.0
        for i, contour in enumerate(contours):
            if hierarchy[0][i][3] != -1:
                continue  # a hole
            x, y, w, h = cv2.boundingRect(contour)
            iy = max(0, min(y + h - 1, box[2]) - max(y, box[0]) + 1)
            ix = max(0, min(x + w - 1, box[3]) - max(x, box[1]) + 1)
            union = w * h + (box[2] - box[0] + 1) * (box[3] - box[1] + 1) - iy * ix
            best = max(best, iy * ix / union)
        out.append(best)
    return np.array(out)


def test_batched_thresholds_match_opencv_contours():
    rng = np.random.default_rng(3)
    maps = ndimage.gaussian_filter(rng.random((5, 20, 20)), sigma=(0, 1.5, 1.5))
    maps = (maps - maps.min(axis=(1, 2), keepdims=True)) / np.ptp(maps, axis=(1, 2), keepdims=True)
    boxes = np.array([[2, 3, 9, 12], [0, 0, 19, 19], [10, 10, 15, 18], [5, 5, 6, 6], [0, 4, 12, 8]])
    thresholds = THRESHOLDS[::7]
    best = best_box_iou(maps, boxes, thresholds)
    for i in range(len(maps)):
        assert best[i] == pytest.approx(opencv_best_iou(maps[i], boxes[i], thresholds))
    assert len(np.unique(best.round(6))) > 10  # the maps do not all give one trivial answer


def test_pxap_by_hand():
    metric = PxAP()
    metric.update(np.array([[[0.905, 0.505], [0.505, 0.105]]]), np.array([[[True, False], [True, False]]]))
    # >= 0.9: P 1, R 1/2; >= 0.5: P 2/3, R 1 -> AP = 1/2 + 1/2 * 2/3
    assert metric.summary()["pxap"] == pytest.approx(100 * (0.5 + 1 / 3))


def test_pxap_matches_sklearn_when_each_value_has_its_own_bin():
    rng = np.random.default_rng(0)
    maps = (rng.integers(0, 100, (6, 12, 12)) + 0.5) / 100  # one value per threshold bin
    masks = rng.random((6, 12, 12)) < 0.2 + 0.6 * maps  # foreground likelier where the map is high
    metric = PxAP()
    for i in range(0, 6, 4):
        metric.update(maps[i : i + 4], masks[i : i + 4])
    expected = average_precision_score(masks.ravel(), maps.ravel())
    assert metric.summary()["pxap"] == pytest.approx(100 * expected)
    assert metric.summary()["foreground_pixels"] == masks.sum()
