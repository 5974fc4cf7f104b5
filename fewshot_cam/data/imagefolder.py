"""A folder of class folders: ``root/{train,val,test}/<class>/*.{jpg,jpeg,png}``.

File names are sorted within a class. Optional foreground masks live at
``root/masks/{split}/<class>/<same file stem>.png`` (non-zero = foreground); when ``root/masks/{split}``
exists every image needs one, and the Split gets ``masks``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fewshot_cam.data.decode import IMAGE_SUFFIXES, Source, decode_image, decode_split
from fewshot_cam.data.split import SPLITS, Split
from fewshot_cam.errors import UserError

NAME = "imagefolder"


def detect_layout(root: Path) -> str:
    """'imagefolder+masks' when a ``masks/`` folder is there, else 'imagefolder'."""
    if not any((root / s).is_dir() for s in SPLITS):
        raise UserError("no image folders found: expected {train,val,test}/<class>/*.jpg|png", root)
    return "imagefolder+masks" if (root / "masks").is_dir() else "imagefolder"


def list_images(root: Path, split: str) -> list[Path]:
    """Every image of ``split``: class folders sorted, files sorted by name within a class."""
    folder = root / split
    if not folder.is_dir():
        raise UserError(f"split '{split}' missing: folder not found", folder)
    files = [
        f for d in sorted(p for p in folder.iterdir() if p.is_dir())
        for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
    ]
    if not files:
        raise UserError(f"split '{split}' has no images in <class>/*.jpg|jpeg|png", folder)
    return files


def mask_paths(root: Path, split: str, images: list[Path]) -> list[Path] | None:
    """The mask of each image, or None when ``root/masks/{split}`` does not exist."""
    folder = root / "masks" / split
    if not folder.is_dir():
        return None
    masks = [folder / image.parent.name / f"{image.stem}.png" for image in images]
    missing = next((m for m in masks if not m.is_file()), None)
    if missing is not None:
        raise UserError(f"mask file missing ({len(masks)} images, masks folder {folder} present)", missing)
    return masks


def locate(root: Path, split: str) -> Source:
    layout = detect_layout(root)
    images = list_images(root, split)
    masks = mask_paths(root, split, images) or []
    return Source(NAME, layout, root, split, tuple(images) + tuple(masks))


def read(source: Source, image_size: int) -> Split:
    images = list_images(source.root, source.split)
    masks = mask_paths(source.root, source.split, images)
    return decode_split(source, [p.parent.name for p in images], images,
                        lambda p: decode_image(p, image_size), str, image_size, masks)


def class_sizes(source: Source) -> dict[str, int]:
    return dict(Counter(p.parent.name for p in list_images(source.root, source.split)))
