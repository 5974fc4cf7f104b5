"""Validators for what dataset files claim: wrong data is an error naming the file, never a number.

Integer indices and labels (:func:`integer_array`), class -> rows tables (:func:`check_class_rows`),
csv text (:func:`read_text`, :func:`check_csv_rows`), image arrays (:func:`check_image_array`) and
foreground masks (:func:`check_masks`, which can also skip the bad ones when the caller asks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError

MASK_POLICIES = ("error", "skip")


def integer_array(values: Any, what: str, path: str | Path) -> np.ndarray:
    """``values`` (a list, tuple or array of integers) as a 1-D int64 array; UserError naming the first
    non-integer (a float, str, bool or None is refused, not rounded)."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iu":
            if values.dtype.kind == "u" and values.size and values.max() > np.iinfo(np.int64).max:
                raise UserError(f"{what} holds {values.max()}, too large for an index", path)
            return values.astype(np.int64).ravel()
        if values.dtype != object:
            raise UserError(f"{what} must hold integers, found dtype {values.dtype}", path)
        values = values.ravel().tolist()
    if not isinstance(values, (list, tuple, range)):
        raise UserError(f"{what} must be a list of integers, found {type(values).__name__}", path)
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise UserError(f"{what}[{i}] is {v!r}, not an integer", path)
    try:
        return np.asarray(values, dtype=np.int64).reshape(-1)
    except OverflowError:
        raise UserError(f"{what} holds an integer too large for an index", path) from None


def check_class_rows(classes: dict[str, np.ndarray], n_rows: int, path: str | Path) -> None:
    """Every class's rows in [0, n_rows), no row twice in a class, no row in two classes."""
    for name, rows in classes.items():
        bad = rows[(rows < 0) | (rows >= n_rows)]
        if bad.size:
            raise UserError(f"class_dict[{name!r}] names row {bad[0]}, but image_data has {n_rows} rows", path)
        values, counts = np.unique(rows, return_counts=True)
        if (counts > 1).any():
            raise UserError(f"class_dict[{name!r}] lists row {values[counts > 1][0]} twice", path)
    names = list(classes)
    if not names:
        return
    rows = np.concatenate([np.asarray(classes[n], dtype=np.int64) for n in names])
    owners = np.repeat(np.arange(len(names)), [len(classes[n]) for n in names])
    order = np.argsort(rows, kind="stable")  # rows in order, each class's own rows are distinct already
    shared = np.nonzero(rows[order][1:] == rows[order][:-1])[0]
    if shared.size:
        first, second = order[shared[0]], order[shared[0] + 1]
        raise UserError(f"row {rows[first]} is in two classes, {names[owners[first]]!r} and "
                        f"{names[owners[second]]!r}", path)


def check_image_array(images: Any, what: str, path: str | Path) -> np.ndarray:
    """An (N, H, W, 3) uint8 array with H, W >= 1; UserError naming its shape and dtype otherwise."""
    shape = getattr(images, "shape", type(images).__name__)
    dtype = getattr(images, "dtype", "?")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"{what} has shape {shape} dtype {dtype}, expected N x H x W x 3 uint8", path)
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise UserError(f"{what} has shape {shape}: zero-size images", path)
    return images


def read_text(path: Path) -> str:
    """A text file as UTF-8 (a BOM is dropped); UserError naming the line and byte offset of bad bytes."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read ({err.strerror or err})", path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"not UTF-8 text: byte {data[err.start]:#04x} at offset {err.start} (line {line})",
                        path) from None


def check_csv_rows(rows: Sequence[tuple[int, str, str]], path: Path) -> None:
    """(line, filename, label) rows: a non-empty filename and label, each filename once."""
    seen: dict[str, tuple[int, str]] = {}
    for line, name, label in rows:
        if not name or not label:
            raise UserError(f"line {line}: empty {'filename' if not name else 'label'}", path)
        if name in seen:
            first, other = seen[name]
            kind = "duplicate row" if other == label else f"shared by classes {other!r} and {label!r}"
            raise UserError(f"line {line}: {name} already on line {first} ({kind})", path)
        seen[name] = (line, label)


def check_masks(masks: np.ndarray, where: str | Path, policy: str = "error",
                name: Callable[[int], str] | None = None) -> np.ndarray:
    """Indices of the masks (N, H, W) bool that are neither all background nor all foreground.

    ``policy="error"``: UserError naming ``where`` and the first bad index (as ``name(i)`` when given);
    ``policy="skip"``: the bad ones are left out of the returned indices (the caller reports how many).
    """
    if policy not in MASK_POLICIES:
        raise UserError(f"unknown mask policy {policy!r} (valid: {', '.join(MASK_POLICIES)})")
    flat = np.asarray(masks).reshape(len(masks), -1)
    empty, full = ~flat.any(axis=1), flat.all(axis=1)
    bad = np.flatnonzero(empty | full)
    if bad.size and policy == "error":
        i = int(bad[0])
        label = name(i) if name is not None else f"image {i}"
        raise UserError(f"{label}: the mask is all {'background' if empty[i] else 'foreground'} "
                        f"({bad.size} of {len(flat)} masks empty or full; nothing to localise)", where)
    return np.flatnonzero(~(empty | full))


def check_split_masks(split: Split, rows: np.ndarray, policy: str = "error") -> np.ndarray:
    """:func:`check_masks` on ``split.masks[rows]``; errors name the split's source and the image
    (split index and class). Returns the kept positions into ``rows``."""
    rows = np.asarray(rows)

    def name(i: int) -> str:
        return f"{split.name} image {rows[i]} (class {split.class_names[split.labels[rows[i]]]})"

    return check_masks(split.masks[rows], split.source or split.name, policy, name)
