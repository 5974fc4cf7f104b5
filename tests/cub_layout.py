"""Writers of tiny datasets in CUB-200-2011's exact distributed layout, for the CUB tests.

``CUB_200_2011/images/<class folder>/<name>.jpg``, ``images.txt``, ``image_class_labels.txt``,
``classes.txt``, ``bounding_boxes.txt`` (``id x y w h`` floats), ``train_test_split.txt``, and
``segmentations/<class folder>/<name>.png`` (soft-edged greyscale) inside, beside or nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Picture:
    folder: str
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    box: tuple[float, float, float, float]  # x, y, w, h
    segmentation: np.ndarray | None  # (H, W) uint8 or None


def write_layout(root: Path, pictures: list[Picture], segmentations: str = "inside") -> Path:
    """Write ``pictures`` under ``root/CUB_200_2011``; segmentations 'inside', 'beside' or 'none'."""
    cub = root / "CUB_200_2011"
    seg_root = {"inside": cub / "segmentations", "beside": root / "segmentations", "none": None}[segmentations]
    folders = sorted({p.folder for p in pictures})
    lines = {name: [] for name in ("images", "image_class_labels", "bounding_boxes", "train_test_split")}
    for i, p in enumerate(pictures, start=1):
        (cub / "images" / p.folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(p.image).save(cub / "images" / p.folder / f"{p.name}.jpg", quality=95)
        if seg_root is not None and p.segmentation is not None:
            (seg_root / p.folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(p.segmentation).save(seg_root / p.folder / f"{p.name}.png")
        lines["images"].append(f"{i} {p.folder}/{p.name}.jpg")
        lines["image_class_labels"].append(f"{i} {folders.index(p.folder) + 1}")
        lines["bounding_boxes"].append(f"{i} " + " ".join(f"{v:.1f}" for v in p.box))
        lines["train_test_split"].append(f"{i} {i % 2}")
    lines["classes"] = [f"{c + 1} {name}" for c, name in enumerate(folders)]
    for name, rows in lines.items():
        (cub / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return cub


def soft_ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """(h, w) uint8: 255 inside the ellipse, 0 outside, a linear ramp over ~2 pixels at its edge."""
    y, x = np.mgrid[0:h, 0:w] + 0.5
    r = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)  # 1 on the edge
    return (np.clip((1.0 - r) * min(ry, rx) / 2.0 + 0.5, 0, 1) * 255).astype(np.uint8)


def random_pictures(n_classes: int, per_class: int, seed: int = 0) -> list[Picture]:
    """Images of varied sizes: a class-coloured bird (soft ellipse) on a class-coloured background."""
    rng = np.random.default_rng(seed)
    pictures = []
    for c in range(n_classes):
        folder = f"{c + 1:03d}.Bird_{chr(ord('A') + c % 26)}{'' if c < 26 else c // 26}"
        bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        for i in range(per_class):
            h, w = 30 + 3 * ((c + i) % 5), 36 + 4 * ((2 * c + i) % 4)
            cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
            ry, rx = h * rng.uniform(0.2, 0.3), w * rng.uniform(0.2, 0.3)
            seg = soft_ellipse(h, w, cy, cx, ry, rx)
            alpha = seg[..., None] / 255.0
            image = alpha * fg + (1 - alpha) * bg + rng.integers(-15, 15, (h, w, 3))
            box = (round(cx - rx, 1), round(cy - ry, 1), round(2 * rx, 1), round(2 * ry, 1))
            pictures.append(
                Picture(folder, f"Bird_{c}_{i:04d}_{100 + i}", image.clip(0, 255).astype(np.uint8), box, seg)
            )
    return pictures


def write_tiny_cub(root: Path, n_classes: int = 12, per_class: int = 4, segmentations: str = "inside") -> Path:
    """12 classes x 4 images: Chen et al.'s rule gives 6 train, 3 val, 3 test classes."""
    return write_layout(root, random_pictures(n_classes, per_class), segmentations)
