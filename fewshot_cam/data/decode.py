"""Shared pieces of every format reader: decode, resize, read pickles, build the canonical Split.

Readers list their source files cheaply (:class:`Source`, used for the cache key), then decode.
Images are decoded once with PIL into a preallocated uint8 array, in parallel threads (PIL releases
the GIL while decoding), resized with PIL's bilinear filter (antialiased when shrinking) only when
the size differs. Every failure becomes a :class:`~fewshot_cam.errors.UserError` naming the file
or the index inside it.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from fewshot_cam.data.pixels import BadPixels, mask_values, to_rgb
from fewshot_cam.data.safe_pickle import safe_load
from fewshot_cam.data.split import SPLITS, Split
from fewshot_cam.errors import UserError
from fewshot_cam.progress import progress

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PROGRESS_MIN = 2000  # show a progress bar from this many images on
_CHUNK = 256
# What PIL raises on a truncated or corrupt PNG/JPEG.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Source:
    """Where one split lives: its layout and every file it is read from (for the cache key)."""

    dataset: str
    layout: str
    root: Path
    split: str
    files: tuple[Path, ...]


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' (valid: {', '.join(SPLITS)})")
    return split


def check_root(root: str | Path | None, dataset: str) -> Path:
    if root is None:
        raise UserError(f"dataset '{dataset}' needs --root (a local folder; nothing is downloaded)")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"dataset root for '{dataset}' does not exist or is not a folder", path)
    return path


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler (:mod:`~fewshot_cam.data.safe_pickle`: data only,
    never code); Python 2 pickles load with latin1 so numpy arrays and str survive."""
    return safe_load(path, encoding="latin1")


def to_str(value: Any) -> str:
    """bytes (Python 2 pickles) or numpy scalars -> str."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def str_keys(mapping: dict) -> dict[str, Any]:
    return {to_str(k): v for k, v in mapping.items()}


def resize(image: Image.Image, size: int, resample: int = Image.Resampling.BILINEAR) -> Image.Image:
    """Resize to ``size`` x ``size`` (bilinear, antialiased when shrinking); untouched when it fits."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), resample)


def decode_image(data: bytes | np.ndarray | Path, size: int) -> np.ndarray:
    """PNG/JPEG bytes or a file -> (size, size, 3) uint8 RGB, every mode by value (:func:`~.pixels.to_rgb`).

    Raises PIL's errors or BadPixels (zero size, a value out of its mode's range); callers name the source.
    """
    if isinstance(data, (bytes, bytearray, np.ndarray)) and len(data) == 0:
        raise BadPixels("empty image (0 bytes)")
    src = data if isinstance(data, Path) else io.BytesIO(bytes(memoryview(data)))
    with Image.open(src) as im:
        return np.asarray(resize(to_rgb(im), size))


def decode_mask(path: Path, size: int, image: Path | None = None) -> np.ndarray:
    """A mask image -> (size, size) bool, non-zero value = foreground (nearest-neighbour resize).

    Values, not colours (:func:`~.pixels.mask_values`). With ``image``, the mask must have that image's
    width and height (BadPixels otherwise: a mask is never resized to fit another picture).
    """
    with Image.open(path) as im:
        if image is not None:
            with Image.open(image) as pic:
                if pic.size != im.size:
                    raise BadPixels(f"mask is {im.width} x {im.height} but its image {image} is "
                                     f"{pic.width} x {pic.height} (masks are never resized to fit)")
        values = Image.fromarray(mask_values(im).astype(np.uint8))
        return np.asarray(resize(values, size, Image.Resampling.NEAREST)) > 0


def resize_array(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, the same PIL resize as decoded files."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(resize(Image.fromarray(image), size))


def parallel_fill(
    out: np.ndarray, items: Sequence, fn: Callable[[Any], np.ndarray], where: Callable[[int], str], desc: str
) -> np.ndarray:
    """``out[i] = fn(items[i])`` for all i in threads, with a progress bar for large splits.

    ``where(i)`` names item i (a file, or "index i of file") in the error a corrupt image raises.
    """
    n = len(items)

    def fill(start: int) -> int:
        for i in range(start, min(start + _CHUNK, n)):
            try:
                out[i] = fn(items[i])
            except FileNotFoundError:
                raise UserError("image file not found", where(i)) from None
            except BadPixels as err:
                raise UserError(str(err), where(i)) from None
            except IMAGE_ERRORS as err:
                raise UserError(f"corrupt or truncated image ({err})", where(i)) from None
        return min(start + _CHUNK, n) - start

    workers = min(8, os.cpu_count() or 1)
    bar = progress(total=n, desc=desc, unit="img", enabled=n >= PROGRESS_MIN)
    with ThreadPoolExecutor(workers) as pool, bar:
        for done in pool.map(fill, range(0, n, _CHUNK)):
            bar.update(done)
    return out


def permute_rows_inplace(array: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """``array[:len(perm)] = array[perm]`` without a second copy of ``array`` (one row of scratch): the
    permutation's cycles are followed, each row moved once. perm: distinct row indices; returns that view."""
    n = len(array)
    full = np.concatenate([perm, np.setdiff1d(np.arange(n), perm)]) if len(perm) < n else np.asarray(perm)
    seen = np.zeros(n, bool)
    for start in np.flatnonzero(full != np.arange(n)).tolist():
        if seen[start]:
            continue
        scratch = array[start].copy()
        j = start
        while True:
            seen[j] = True
            k = int(full[j])
            if k == start:
                array[j] = scratch
                break
            array[j] = array[k]
            j = k
    return array[: len(perm)]


def canonical_order(names: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Per-image class names -> (sorted class names, canonical order, labels in that order).

    The canonical order groups images by sorted class name and keeps source order within a class.
    """
    class_names, labels = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
    order = np.argsort(labels, kind="stable")
    return tuple(str(c) for c in class_names), order, labels[order].astype(np.int64)


def like(item: Any) -> Path | None:
    """The image file a mask must match in size, when the item is a file."""
    return item if isinstance(item, Path) else None


def decode_split(source: Source, names: Sequence[str], items: Sequence, fn: Callable[[Any], np.ndarray],
                 where: Callable[[Any], str], image_size: int, masks: Sequence | None = None) -> Split:
    """Decode ``items`` (one per image, with class ``names``) into a Split in canonical order.

    ``fn(item) -> (S, S, 3) uint8``; ``where(item)`` names the item in errors; ``masks`` optional
    mask files (or None entries for images without one).
    """
    if len(names) == 0:
        raise UserError(f"split '{source.split}' lists no images", source.files[0] if source.files else source.root)
    class_names, order, labels = canonical_order(names)
    ordered = [items[i] for i in order]
    images = np.empty((len(ordered), image_size, image_size, 3), np.uint8)
    desc = f"{source.dataset}/{source.split}"
    parallel_fill(images, ordered, fn, lambda i: where(ordered[i]), desc)
    mask_array = None
    if masks is not None:
        ordered_masks = [masks[i] for i in order]
        mask_array = np.empty((len(ordered), image_size, image_size), bool)
        pairs = list(zip(ordered_masks, ordered))
        parallel_fill(mask_array, pairs, lambda pair: decode_mask(pair[0], image_size, like(pair[1])),
                      lambda i: str(ordered_masks[i]), desc + " masks")
    return Split(images, labels, class_names, mask_array, name=desc, source=str(source.root))
