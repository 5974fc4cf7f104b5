"""The ablation's conditions: what an image becomes, and which background goes with which query.

Six conditions (``CONDITIONS``), after Xiao et al., "Noise or Signal: The Role of Image Backgrounds in
Object Recognition", ICLR 2021 (the ImageNet-9 protocol; their names in brackets):

- ``original``;
- ``foreground``: the background filled (Only-FG);
- ``background``: the foreground filled, a hole of the fill colour where the object was (Only-BG-B);
- ``bg-tiled``: the foreground's box refilled with tiles of the image's own background (Only-BG-T;
  :func:`fewshot_cam.analysis.fills.tile_background`);
- ``mixed-same``: the foreground pasted onto the ``bg-tiled`` background of another image of the same
  class (Mixed-Same);
- ``mixed-rand``: onto that of an image of another class of the same episode (Mixed-Rand; theirs is any
  other class, ours one of the episode's, so that "predicted as the background's class" is defined).

Where we differ: Xiao et al. evaluate a fixed 9-class classifier; here the classifier is fitted on an
episode's support set, so the background donors are drawn per episode slot (:func:`choose_donors`):
uniformly among the split's images of the donor class that the episode does not use (so a query never
carries the very background of a support image), from a seeded generator. A condition works on a batch
on any device: ``fn(images, masks, donor_images, donor_masks, fill, mean) -> (B, H, W, 3) uint8``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from fewshot_cam.analysis.fills import apply_fill, tile_background
from fewshot_cam.errors import UserError
from fewshot_cam.registry import Registry

ConditionFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Condition:
    """How to build the condition's images, and whose background they get: None (their own), "same"
    (another image of the same class) or "other" (an image of another class of the episode)."""

    build: ConditionFn
    donor: str | None = None


CONDITIONS: Registry[Condition] = Registry("condition")


def _tiled(images: torch.Tensor, masks: torch.Tensor, fill: str, mean: torch.Tensor) -> torch.Tensor:
    """``tile_background``, with the fill in the box of the images whose box leaves no background strip."""
    tiled, ok = tile_background(images, masks)
    return torch.where(ok[:, None, None, None], tiled, apply_fill(images, ~masks, fill, mean))


def _paste(images, masks, donor_images, donor_masks, fill, mean) -> torch.Tensor:
    return torch.where(masks[..., None], images, _tiled(donor_images, donor_masks, fill, mean))


CONDITIONS.register("original", Condition(lambda images, masks, di, dm, fill, mean: images.clone()),
                    help="the images as they are")
CONDITIONS.register("foreground", Condition(lambda images, masks, di, dm, fill, mean: apply_fill(images, masks, fill, mean)),
                    help="foreground only: the background filled")
CONDITIONS.register("background", Condition(lambda images, masks, di, dm, fill, mean: apply_fill(images, ~masks, fill, mean)),
                    help="background only: the foreground filled (a hole where the object was)")
CONDITIONS.register("bg-tiled", Condition(lambda images, masks, di, dm, fill, mean: _tiled(images, masks, fill, mean)),
                    help="background only, the foreground's box tiled with the image's own background (no hole)")
CONDITIONS.register("mixed-same", Condition(_paste, donor="same"),
                    help="the foreground on the tiled background of another image of the same class")
CONDITIONS.register("mixed-rand", Condition(_paste, donor="other"),
                    help="the foreground on the tiled background of an image of another class of the episode")


def check_conditions(names: str | list[str]) -> list[str]:
    """'a,b' or a list -> validated names in the given order; 'all' -> every condition. 'original' is
    always evaluated (it is every index's reference) and comes first."""
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    names = [n for n in names if n]
    if names == ["all"]:
        names = CONDITIONS.names()
    for n in names:
        CONDITIONS.get(n)
    return ["original"] + [n for n in dict.fromkeys(names) if n != "original"]


def choose_donors(labels: np.ndarray, indices: torch.Tensor, donor: str, seed: int,
                  usable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The background donor of every episode slot: (rows (E, N, K+Q) into the split, episode row (E, N, K+Q)
    of the donor's class). labels: (n,) the split's labels; indices: (E, N, K+Q) split rows; donor "same"
    or "other"; usable: (n,) bool images that may donate (default all).

    "other" picks, per slot, one of the episode's N - 1 other classes uniformly. The donor image is drawn
    uniformly among the class's usable images outside the episode (up to 32 rejection rounds), else among
    those other than the slot's own image.
    """
    if donor not in ("same", "other"):
        raise ValueError(f"donor must be 'same' or 'other', got {donor!r}")
    rng = np.random.default_rng([seed, 1 if donor == "same" else 2])
    idx = indices.numpy()
    E, N, KQ = idx.shape
    shift = np.zeros((E, N, KQ), np.int64) if donor == "same" else rng.integers(1, N, (E, N, KQ))
    target = (np.arange(N)[None, :, None] + shift) % N  # (E, N, K+Q) episode row of the donor class
    cls = labels[idx[:, :, 0]][np.arange(E)[:, None, None], target]  # (E, N, K+Q) split class
    usable = np.ones(len(labels), bool) if usable is None else usable
    pool = np.flatnonzero(usable)[np.argsort(labels[usable], kind="stable")]  # usable rows grouped by class
    sizes = np.bincount(labels[usable], minlength=int(labels.max()) + 1)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if (sizes[np.unique(cls)] < 2).any():
        raise UserError(f"every class needs at least 2 usable images to donate a background ({donor} class)")
    flat_episode = idx.reshape(E, 1, 1, N * KQ)
    rows = np.full((E, N, KQ), -1, np.int64)
    todo, attempt = np.ones((E, N, KQ), bool), 0
    while todo.any():
        c = cls[todo]
        rows[todo] = pool[offsets[c] + (rng.random(len(c)) * sizes[c]).astype(np.int64)]
        attempt += 1
        todo = (rows[..., None] == flat_episode).any(-1) if attempt < 32 else rows == idx
    return rows, target
