"""Foreground masks of the ablation: ground truth or a mask model's maps, dilated, validated.

A mask that is all empty or all full (after ``--mask-dilate``) would make "foreground only" or
"background only" an empty or an unchanged image and silently bias every index, so it is an error
naming the image and, for an image folder, the mask file (``--bad-masks error``, the default); with
``--bad-masks skip`` the episodes that use such an image (as a slot or as a background donor) are left
out and counted. Masks are never resized or inverted here (a mask file whose size differs from its
image is rejected where it is read, in ``data.decode``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fewshot_cam.analysis.fills import dilate
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError

BAD_MASKS = ("error", "skip")


def dilate_batched(masks: np.ndarray | torch.Tensor, pixels: int, device: torch.device,
                   batch_size: int = 1024) -> torch.Tensor:
    """:func:`fills.dilate` of masks (N, H, W) bool in batches on ``device`` -> (N, H, W) bool on the CPU."""
    masks = torch.as_tensor(masks)
    if pixels == 0:
        return masks.clone()
    out = [dilate(masks[s : s + batch_size].to(device), pixels).cpu() for s in range(0, len(masks), batch_size)]
    return torch.cat(out)


def bad_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(empty (N,), full (N,)) bool of masks (N, H, W) bool."""
    flat = masks.flatten(1)
    return ~flat.any(1), flat.all(1)


def mask_file(split: Split, dataset: str, root: str | Path | None, row: int) -> Path | None:
    """The mask file of split image ``row`` for an image folder (None for other formats)."""
    if dataset != "imagefolder" or root is None:
        return None
    from fewshot_cam.data import imagefolder  # only to name a file in an error

    root = Path(root).expanduser().resolve()
    split_name = split.name.rsplit("/", 1)[-1]
    label = int(split.labels[row])
    k = int(np.flatnonzero(split.class_indices()[label] == row)[0])
    images = [p for p in imagefolder.list_images(root, split_name) if p.parent.name == split.class_names[label]]
    return root / "masks" / split_name / images[k].parent.name / f"{images[k].stem}.png"


def check_masks(masks: torch.Tensor, rows: np.ndarray, split: Split, dataset: str, root: str | None,
                policy: str, dilation: int) -> torch.Tensor:
    """(U,) bool: the images of ``rows`` (split rows of ``masks`` (U, H, W)) whose masks are usable.
    ``policy`` "error" raises UserError naming the first bad one; "skip" returns the flags."""
    if policy not in BAD_MASKS:
        raise UserError(f"unknown --bad-masks {policy!r} (valid: {', '.join(BAD_MASKS)})")
    empty, full = bad_masks(masks)
    bad = empty | full
    if policy == "error" and bad.any():
        i = int(torch.nonzero(bad)[0, 0])
        row = int(rows[i])
        what = "all empty" if empty[i] else "all foreground" + (f" after --mask-dilate {dilation}" if dilation else "")
        label = split.class_names[int(split.labels[row])]
        message = (f"the mask of image {row} of {split.name} (class {label}) is {what}; {int(bad.sum())} of "
                   f"{len(rows)} masks are unusable (fix them, or pass --bad-masks skip)")
        raise UserError(message, mask_file(split, dataset, root, row) or split.source or None)
    return ~bad
