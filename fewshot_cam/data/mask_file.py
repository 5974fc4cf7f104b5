"""Mask files: foreground masks for a split that has none of its own (``fewshot-cam data boxes``).

One ``.npz`` per split, aligned with the split's image order exactly as fewshot-cam loads it:

- ``masks`` (N, H, W) uint8, non-zero = foreground; ``has_mask`` (N,) bool (False: no annotation,
  or no ImageNet source found; the mask is then all zero and must not be used);
- ``source`` (N,) str: where each mask came from (the ImageNet file name, '' where unmatched);
- ``thumbs`` (N, 8, 8, 3) uint8: a tiny picture of each image, so that a split whose images were
  reordered since (same class names and sizes, so the same fingerprint) is caught;
- metadata: ``format``, ``dataset``, ``split``, ``fingerprint`` (:meth:`Split.fingerprint`),
  ``image_size``, ``refine`` (how boxes became masks).

A mask file that disagrees with the data (length, image size, dataset, split, fingerprint, an image
that no longer looks like its thumbnail) is an error; it is never resized or realigned.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fewshot_cam.data.source_match import PIXEL_MAX, array_thumbnails, paired_rms
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write

FORMAT = "fewshot-cam-masks/1"
META = ("format", "dataset", "split", "fingerprint", "image_size", "refine")
SIGNATURE = 8  # side of the per-image thumbnails kept in the file


def is_mask_file(value: str | Path | None) -> bool:
    """True for a ``--masks`` value naming a mask file rather than a mask source (gt, cam, ...)."""
    return value is not None and str(value).endswith(".npz")


def split_identity(split: Split) -> tuple[str, str]:
    """(dataset, split) from a Split's ``name`` ("<dataset>/<split>")."""
    dataset, _, name = split.name.rpartition("/")
    return dataset, name


def write_mask_file(path: str | Path, split: Split, masks: np.ndarray, has_mask: np.ndarray,
                    source: list[str], refine: str) -> Path:
    """Write the mask file of ``split`` atomically. masks: (N, H, W) bool/uint8; has_mask: (N,) bool."""
    masks = np.asarray(masks).astype(np.uint8)
    has_mask = np.asarray(has_mask, bool)
    if masks.shape != split.images.shape[:3] or has_mask.shape != (len(split.images),) or len(source) != len(has_mask):
        raise ValueError(f"masks {masks.shape} / has_mask {has_mask.shape} / {len(source)} sources do not fit "
                         f"images {split.images.shape}")
    dataset, name = split_identity(split)
    meta = {"format": FORMAT, "dataset": dataset, "split": name, "fingerprint": split.fingerprint(),
            "image_size": split.image_size, "refine": refine}
    arrays = {"masks": masks * has_mask[:, None, None], "has_mask": has_mask, "source": np.asarray(source, dtype=str),
              "thumbs": array_thumbnails(split.images, SIGNATURE), **{k: np.asarray(v) for k, v in meta.items()}}
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_mask_file(path: str | Path) -> dict:
    """Every array and metadata field of a mask file (metadata as Python values), format checked."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise UserError("mask file not found", path) from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise UserError(f"not a mask file (corrupt or not an npz: {err})", path) from None
    missing = [k for k in ("masks", "has_mask", "source", "thumbs", *META) if k not in data]
    if missing:
        raise UserError(f"not a mask file: no {', '.join(missing)}", path)
    for key in META:
        data[key] = data[key].item()
    if data["format"] != FORMAT:
        raise UserError(f"format {data['format']!r} is not {FORMAT!r}", path)
    return data


def load_mask_file(path: str | Path, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(masks (N, H, W) bool, has_mask (N,) bool) of ``split`` from a mask file, after checking that the
    file was made for this very split: same dataset and split, fingerprint, number of images, image size."""
    data = read_mask_file(path)
    dataset, name = split_identity(split)
    checks = [
        ("dataset/split", f"{data['dataset']}/{data['split']}", f"{dataset}/{name}"),
        ("image size", data["image_size"], split.image_size),
        ("number of images", len(data["masks"]), len(split.images)),
        ("fingerprint (class names and sizes)", data["fingerprint"], split.fingerprint()),
    ]
    for what, found, expected in checks:
        if found != expected:
            raise UserError(f"mask file made for {what} {found}, but the data has {expected} "
                            f"(masks are never resized or realigned: rebuild them with 'data boxes')", path)
    masks, has_mask = data["masks"] != 0, data["has_mask"].astype(bool)
    if masks.shape != split.images.shape[:3] or has_mask.shape != (len(split.images),):
        raise UserError(f"masks {masks.shape} / has_mask {has_mask.shape} do not fit images {split.images.shape}", path)
    moved = np.flatnonzero(paired_rms(array_thumbnails(split.images, SIGNATURE), data["thumbs"]) > PIXEL_MAX)
    if len(moved):
        raise UserError(
            f"{len(moved)} images differ from those the masks were made for (first: image {moved[0]}, "
            f"class {split.class_names[split.labels[moved[0]]]!r}): the split changed or was reordered",
            path,
        )
    return masks, has_mask


def restrict_to_masks(split: Split, masks: np.ndarray, has_mask: np.ndarray) -> tuple[Split, dict[str, int]]:
    """The split's images that have a mask, with those masks, and the eligible images per class.

    Classes left with no masked image are dropped (their count, 0, stays in the dict); the rest keep
    their canonical order, so episodes are drawn only from annotated images.
    """
    counts = np.bincount(split.labels[has_mask], minlength=split.num_classes)
    eligible = {name: int(n) for name, n in zip(split.class_names, counts)}
    kept = np.flatnonzero(counts > 0)
    relabel = np.full(split.num_classes, -1, np.int64)
    relabel[kept] = np.arange(len(kept))
    sub = Split(split.images[has_mask], relabel[split.labels[has_mask]], tuple(split.class_names[c] for c in kept),
                masks[has_mask], name=split.name, source=split.source)
    return sub, eligible


def with_mask_file(split: Split, path: str | Path) -> tuple[Split, dict[str, int]]:
    """:func:`restrict_to_masks` with the masks of a mask file (checked against ``split``)."""
    masks, has_mask = load_mask_file(path, split)
    if not has_mask.any():
        raise UserError("no image of the split has a mask in this file", path)
    return restrict_to_masks(split, masks, has_mask)
