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

Where we differ: Xiao et al. evaluate a fixed 9-class classifier on a fixed set of composites; here the
classifier is fitted on an episode's support set, so the donor *class* of a ``mixed-rand`` slot is drawn
per episode slot, uniformly among the episode's other classes. The donor *image* is fixed per (image,
donor class): a seeded hash ranks a few candidates among the split's images of that class (never the
image itself), and a slot takes the first candidate the episode does not use (so a query never carries
the very background of a support image when another candidate exists). Composites are thereby shared
across episodes: a condition embeds at most min(#modified slots, #images x #classes x a few) images, and
``mixed-same`` about two per image. A condition works on a batch on any device:
``fn(images, masks, donor_images, donor_masks, fill, mean) -> (B, H, W, 3) uint8``.
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
CONDITIONS.register(
    "foreground",
    Condition(lambda images, masks, di, dm, fill, mean: apply_fill(images, masks, fill, mean)),
    help="foreground only: the background filled",
)
CONDITIONS.register(
    "background",
    Condition(lambda images, masks, di, dm, fill, mean: apply_fill(images, ~masks, fill, mean)),
    help="background only: the foreground filled (a hole where the object was)",
)
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


CANDIDATES = 4
"""Donor candidates per (image, donor class), tried in order until one is outside the episode."""


def _mix(*keys: np.ndarray) -> np.ndarray:
    """A splitmix64 hash of broadcast integer keys -> uint64: a seeded, order-free pseudo-random draw."""
    z = np.zeros(np.broadcast_shapes(*(np.shape(k) for k in keys)), np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            z = (z ^ np.asarray(k, dtype=np.uint64)) + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
    return z


def donor_candidates(labels: np.ndarray, images: np.ndarray, classes: np.ndarray, seed: int,
                     usable: np.ndarray | None = None) -> np.ndarray:
    """(..., CANDIDATES) split rows: the fixed background donors of split images ``images`` (...) from
    classes ``classes`` (...), drawn uniformly among the class's usable images other than the image itself."""
    usable = np.ones(len(labels), bool) if usable is None else usable
    pool = np.flatnonzero(usable)[np.argsort(labels[usable], kind="stable")]  # usable rows grouped by class
    sizes = np.bincount(labels[usable], minlength=int(labels.max()) + 1)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    own = (labels[images] == classes) & usable[images]  # the image is in its donor pool: leave it out
    n = sizes[classes] - own
    if (n < 1).any():
        raise UserError("every class needs at least 2 usable images to donate a background to its own images")
    k = np.arange(CANDIDATES)
    r = (_mix(seed, images[..., None], classes[..., None], k) % n[..., None].astype(np.uint64)).astype(np.int64)
    rows = pool[offsets[classes][..., None] + r]
    last = pool[offsets[classes] + sizes[classes] - 1][..., None]
    return np.where(own[..., None] & (rows == images[..., None]), last, rows)  # swap itself for the last one


def choose_donors(labels: np.ndarray, indices: torch.Tensor, donor: str, seed: int,
                  usable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The background donor of every episode slot: (rows (E, N, K+Q) into the split, episode row (E, N, K+Q)
    of the donor's class). labels: (n,) the split's labels; indices: (E, N, K+Q) split rows; donor "same"
    or "other" (one of the episode's N - 1 other classes, uniformly per slot, from a generator seeded by
    ``seed``); usable: (n,) bool images that may donate (default all). The donor image is the first of
    :func:`donor_candidates` outside the episode, else (rare) the first.
    """
    if donor not in ("same", "other"):
        raise ValueError(f"donor must be 'same' or 'other', got {donor!r}")
    idx = indices.numpy()
    E, N, KQ = idx.shape
    rng = np.random.default_rng([seed, 1 if donor == "same" else 2])
    shift = np.zeros((E, N, KQ), np.int64) if donor == "same" else rng.integers(1, N, (E, N, KQ))
    target = (np.arange(N)[None, :, None] + shift) % N  # (E, N, K+Q) episode row of the donor class
    cls = labels[idx[:, :, 0]][np.arange(E)[:, None, None], target]  # (E, N, K+Q) split class
    cands = donor_candidates(labels, idx, cls, seed, usable)  # (E, N, K+Q, C)
    inside = (cands[..., None] == idx.reshape(E, 1, 1, 1, N * KQ)).any(-1)  # (E, N, K+Q, C)
    first = np.where(inside.all(-1), 0, inside.argmin(-1))  # the first candidate outside the episode
    return np.take_along_axis(cands, first[..., None], -1)[..., 0], target
