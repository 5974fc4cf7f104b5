"""A PNG contact sheet of a split: one row per class, the class name on the left, mask outlines in yellow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write

_OUTLINE = np.array([255, 230, 0], dtype=np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` (H, W) bool with a 4-neighbour outside the mask: (H, W) bool."""
    m = np.pad(mask, 1)
    interior = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~interior


def _tile(image: np.ndarray, mask: np.ndarray | None, zoom: int) -> np.ndarray:
    """One image (H, W, 3) uint8 enlarged ``zoom`` times (nearest), its mask outline drawn on top."""
    big = image.repeat(zoom, 0).repeat(zoom, 1)
    if mask is not None:
        big[_outline(mask.repeat(zoom, 0).repeat(zoom, 1))] = _OUTLINE
    return big


def save_grid(split: Split, path: str | Path, n_classes: int = 8, per_class: int = 6, seed: int = 0) -> Path:
    """Write a grid of ``per_class`` random images for ``n_classes`` random classes of ``split`` to ``path``."""
    from PIL import Image, ImageDraw

    if n_classes < 1 or per_class < 1:
        raise UserError(f"preview needs n_classes >= 1 and per_class >= 1, got {n_classes} and {per_class}")
    rng = np.random.default_rng(seed)
    classes = np.sort(rng.permutation(split.num_classes)[:n_classes])
    zoom = max(1, 96 // split.image_size)
    side, gap, label_w = split.image_size * zoom, 4, 190
    sheet = np.full((len(classes) * (side + gap) + gap, label_w + per_class * (side + gap), 3), 255, np.uint8)
    for row, c in enumerate(classes):
        members = split.class_indices()[c]
        for col, i in enumerate(rng.permutation(members)[:per_class]):
            top, left = gap + row * (side + gap), label_w + col * (side + gap)
            mask = None if split.masks is None else split.masks[i]
            sheet[top:top + side, left:left + side] = _tile(split.images[i], mask, zoom)
    picture = Image.fromarray(sheet)
    pen = ImageDraw.Draw(picture)
    for row, c in enumerate(classes):
        pen.text((6, gap + row * (side + gap) + side // 2 - 6), split.class_names[c], fill=(0, 0, 0))
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"unknown picture format {path.suffix!r} (use .png or .jpg)", path)
    return atomic_write(path, lambda f: picture.save(f, format=fmt))
