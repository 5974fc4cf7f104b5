"""Maps of one or more checkpoints on the same sample of a split: pictures and localisation numbers.

:func:`model_maps` explains each checkpoint's own top-1 base class (a pretrained head has no novel
classes, so on a test split the map shows what drives the model's best base-class guess); ``fewshot-cam
cam`` instead picks the class per split with :mod:`.cam_targets` (``--target top1`` is this one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from fewshot_cam.analysis.attribution import attribute_images, classifier_scorer
from fewshot_cam.analysis.localization import Localization
from fewshot_cam.analysis.pictures import save_cam_grid
from fewshot_cam.data.split import Split
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.models.features import model_device

ROWS_PER_PICTURE = 8

LOCALIZATION_FORMAT = "fewshot-cam-localization/1"
"""The ``format`` of ``fewshot-cam cam``'s localization.json."""


def sample_rows(split: Split, n: int, seed: int) -> np.ndarray:
    """``n`` distinct image indices of ``split`` (all of them if n >= its size), in random order from
    ``seed``, so that each picture grid mixes classes (sorted indices would fill a grid with one class)."""
    n = min(n, len(split.images))
    return np.random.default_rng(seed).choice(len(split.images), size=n, replace=False)


def model_maps(
    models: Mapping[str, FewShotClassifier], images: np.ndarray, method: str, batch_size: int = 64,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """label -> (N, H, W) maps in [0, 1] of each model's top-1 class. images: (N, H, W, 3) uint8."""
    out = {}
    for label, model in models.items():
        model.eval()
        maps = attribute_images(method, classifier_scorer(model), images, model_device(model),
                                batch_size=batch_size, progress=progress)
        out[label] = maps.cpu().numpy()
    return out


def localization_summary(maps: Mapping[str, np.ndarray], masks: np.ndarray, fraction: float = 0.2) -> dict[str, dict]:
    """label -> Localization summary of its maps against the ground-truth masks (N, H, W)."""
    out = {}
    for label, m in maps.items():
        metric = Localization(fraction)
        metric.update(m, masks)
        out[label] = metric.summary()
    return out


def write_pictures(
    out_dir: str | Path, split: Split, rows: np.ndarray, maps: Mapping[str, np.ndarray], method: str, limit: int
) -> list[Path]:
    """PNG grids of the first ``limit`` sampled images, ``ROWS_PER_PICTURE`` per file: image, one overlay
    per model, the mask when the split has masks. Rows are titled with the image's class."""
    paths = []
    shown = min(limit, len(rows))
    for page, start in enumerate(range(0, shown, ROWS_PER_PICTURE)):
        sel = slice(start, min(start + ROWS_PER_PICTURE, shown))
        idx = rows[sel]
        titles = [split.class_names[int(c)][:18] for c in split.labels[idx]]
        masks = None if split.masks is None else split.masks[idx]
        columns = {f"{label}\n{method}": m[sel] for label, m in maps.items()}
        path = Path(out_dir) / f"{method}_{split.name.replace('/', '_')}_{page:02d}.png"
        paths.append(save_cam_grid(path, split.images[idx], columns, masks, titles))
    return paths

