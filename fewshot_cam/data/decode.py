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
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from fewshot_cam.data.split import SPLITS, Split
from fewshot_cam.errors import UserError
from fewshot_cam.progress import progress

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PROGRESS_MIN = 2000  # show a progress bar from this many images on
_CHUNK = 256
# What a damaged pickle can raise while loading.
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError)
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
    """Unpickle ``path``; Python 2 pickles load with latin1 so numpy arrays and str survive."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except PICKLE_ERRORS as err:
        raise UserError(f"corrupt or truncated pickle ({type(err).__name__}: {err})", path) from None


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
    """PNG/JPEG bytes or a file -> (size, size, 3) uint8 RGB. Raises PIL's errors (callers name the source)."""
    src = data if isinstance(data, Path) else io.BytesIO(bytes(memoryview(data)))
    with Image.open(src) as im:
        return np.asarray(resize(im.convert("RGB"), size))


def decode_mask(path: Path, size: int, image: Path | None = None) -> np.ndarray:
    """A mask image -> (size, size) bool, non-zero = foreground (nearest-neighbour resize, as its image).

    Given the ``image`` file it belongs to, a mask of another pixel size is a UserError: it would have
    to be stretched to fit, and a stretched mask no longer marks the object.
    """
    with Image.open(path) as im:
        if image is not None:
            with Image.open(image) as ref:
                if ref.size != im.size:
                    raise UserError(f"mask is {im.size[0]}x{im.size[1]} but its image {image} is "
                                    f"{ref.size[0]}x{ref.size[1]} (masks are never resized to fit)", path)
        return np.asarray(resize(im.convert("L"), size, Image.Resampling.NEAREST)) > 0


def resize_array(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, the same PIL resize as decoded files."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(resize(Image.fromarray(image), size))


def parallel_fill(out: np.ndarray, items: Sequence, fn: Callable[[Any], np.ndarray], where: Callable[[int], str], desc: str) -> np.ndarray:
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
            except IMAGE_ERRORS as err:
                raise UserError(f"corrupt or truncated image ({err})", where(i)) from None
        return min(start + _CHUNK, n) - start

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool, progress(total=n, desc=desc, unit="img", enabled=n >= PROGRESS_MIN) as bar:
        for done in pool.map(fill, range(0, n, _CHUNK)):
            bar.update(done)
    return out


def canonical_order(names: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Per-image class names -> (sorted class names, canonical order, labels in that order).

    The canonical order groups images by sorted class name and keeps source order within a class.
    """
    class_names, labels = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
    order = np.argsort(labels, kind="stable")
    return tuple(str(c) for c in class_names), order, labels[order].astype(np.int64)


def decode_split(source: Source, names: Sequence[str], items: Sequence, fn: Callable[[Any], np.ndarray],
                 where: Callable[[Any], str], image_size: int, masks: Sequence | None = None) -> Split:
    """Decode ``items`` (one per image, with class ``names``) into a Split in canonical order.

    ``fn(item) -> (S, S, 3) uint8``; ``where(item)`` names the item in errors; ``masks`` optional
    mask files (or None entries for images without one).
    """
    class_names, order, labels = canonical_order(names)
    ordered = [items[i] for i in order]
    images = np.empty((len(ordered), image_size, image_size, 3), np.uint8)
    desc = f"{source.dataset}/{source.split}"
    parallel_fill(images, ordered, fn, lambda i: where(ordered[i]), desc)
    mask_array = None
    if masks is not None:
        ordered_masks = [(masks[i], items[i] if isinstance(items[i], Path) else None) for i in order]
        mask_array = np.empty((len(ordered), image_size, image_size), bool)
        parallel_fill(mask_array, ordered_masks, lambda p: decode_mask(p[0], image_size, p[1]),
                      lambda i: str(ordered_masks[i][0]), desc + " masks")
    return Split(images, labels, class_names, mask_array, name=desc, source=str(source.root))
