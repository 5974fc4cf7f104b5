"""A decoded dataset split: uint8 images, labels, class names and optional foreground masks.

Every format reader returns a :class:`Split`; everything downstream (samplers, training,
evaluation, analysis) reads only this. Classes are in canonical order (sorted class names), and the
images of each class keep the order in which the source files list them, so "image i of class c"
names the same picture in every format of the same data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from fewshot_cam.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset, held in memory as uint8.

    images: (N, H, W, 3) uint8, RGB.
    labels: (N,) int64 in [0, C), indices into ``class_names``.
    class_names: C names, sorted.
    masks: (N, H, W) bool foreground masks, or None when the dataset has none.
    name: "<dataset>/<split>", for messages.
    source: where it was read from (a path), for messages.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    masks: np.ndarray | None = None
    name: str = ""
    source: str = ""
    _class_indices: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        n = len(self.images)
        assert self.images.dtype == np.uint8 and self.images.ndim == 4 and self.images.shape[-1] == 3, self.images.shape
        assert self.labels.shape == (n,), (self.labels.shape, n)
        assert self.masks is None or self.masks.shape == self.images.shape[:3], (self.masks.shape, self.images.shape)
        assert list(self.class_names) == sorted(self.class_names), "class names must be sorted"
        order = np.argsort(self.labels, kind="stable")
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        self._class_indices.extend(np.split(order, np.cumsum(counts)[:-1]))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def class_indices(self) -> list[np.ndarray]:
        """For each class, the indices of its images in canonical (source) order."""
        return self._class_indices

    def class_sizes(self) -> list[int]:
        return [len(ix) for ix in self._class_indices]

    def fingerprint(self) -> str:
        """A hash of the class names and their sizes: identical for every file format of the same split."""
        return class_fingerprint(self.class_names, self.class_sizes())


def class_fingerprint(class_names: Sequence[str], class_sizes: Sequence[int]) -> str:
    """:meth:`Split.fingerprint` from names and sizes alone (no images needed)."""
    payload = json.dumps([[n, int(s)] for n, s in zip(class_names, class_sizes)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def concat_splits(parts: Sequence[Split], name: str) -> Split:
    """One Split of every image of ``parts`` (disjoint class sets), in canonical order: classes sorted,
    each class's images in their part's order. Masks are kept when every part has them."""
    seen: dict[str, str] = {}
    for part in parts:
        for c in part.class_names:
            if c in seen:
                raise UserError(
                    f"class '{c}' is in both {seen[c]} and {part.name}: splits to join must not share classes"
                )
            seen[c] = part.name
    class_names = tuple(sorted(seen))
    lookup = {c: i for i, c in enumerate(class_names)}
    labels = np.concatenate([np.array([lookup[c] for c in p.class_names], np.int64)[p.labels] for p in parts])
    order = np.argsort(labels, kind="stable")  # (N,) canonical order
    images = np.concatenate([p.images for p in parts])[order]
    masks = None
    if all(p.masks is not None for p in parts):
        masks = np.concatenate([p.masks for p in parts])[order]
    return Split(images, labels[order], class_names, masks, name=name, source=parts[0].source if parts else "")
