"""Localisation metrics on hand-made maps and masks whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot_cam.analysis.localization import (
    Localization,
    box_iou,
    largest_component_box,
    mask_box,
    mask_iou,
    threshold_map,
)


def test_threshold_keeps_pixels_at_or_above_the_fraction_of_the_max():
    m = np.array([[0.0, 1.0], [2.0, 10.0]])
    assert threshold_map(m, 0.2).tolist() == [[False, False], [True, True]]  # 2 >= 0.2 * 10
    assert threshold_map(np.zeros((2, 2))).all()


def test_largest_component_box_ignores_the_smaller_blob():
    b = np.zeros((8, 8), bool)
    b[1:3, 1:3] = True  # 4 pixels
    b[4:7, 3:8] = True  # 15 pixels
    b[0, 7] = True  # diagonal neighbours are separate components (4-connectivity)
    assert largest_component_box(b) == (4, 3, 6, 7)
    assert largest_component_box(np.zeros((3, 3), bool)) is None


def test_box_iou_by_hand():
    # 2x2 box at (0,0)-(1,1) and 2x2 box at (1,1)-(2,2): intersection 1 pixel, union 4 + 4 - 1
    assert box_iou((0, 0, 1, 1), (1, 1, 2, 2)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 3, 3), (0, 0, 3, 3)) == 1.0
    assert box_iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0
    assert box_iou(None, (0, 0, 1, 1)) == 0.0


def test_mask_box_and_iou():
    mask = np.zeros((6, 6), bool)
    mask[2:5, 1:3] = True
    assert mask_box(mask) == (2, 1, 4, 2)
    pred = np.zeros((6, 6), bool)
    pred[2:5, 2:4] = True  # overlaps one column of three pixels: 3 / (6 + 6 - 3)
    assert mask_iou(pred, mask) == pytest.approx(3 / 9)


def test_localization_accumulates_hits_and_ious():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 2:6, 2:6] = True  # map covers it exactly -> box IoU 1, pixel IoU 1
    masks[1, 0:2, 0:2] = True  # map peaks far away -> box IoU 0
    maps = np.zeros((3, 8, 8), np.float32)
    maps[0, 2:6, 2:6] = 1.0
    maps[0, 0, 0] = 0.1  # below 20% of the max: dropped
    maps[1, 5:8, 5:8] = 1.0
    metric = Localization(fraction=0.2)
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks))  # the third mask is empty: skipped
    s = metric.summary()
    assert s["n"] == 2 and s["skipped"] == 1
    assert s["loc_acc"] == pytest.approx(50.0)
    assert s["mean_iou"] == pytest.approx((1.0 + 0.0) / 2)
    with pytest.raises(ValueError, match="differ in shape"):
        metric.update(maps[:, :4], masks)
