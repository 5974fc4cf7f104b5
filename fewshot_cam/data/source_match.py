"""Which ImageNet file each few-shot image was cut from, checked on the pixels.

Both sides are compared as small thumbnails (``THUMB`` x ``THUMB`` RGB, box-filtered), so JPEG
re-compression and the squash to 84 x 84 barely move them while different photographs differ a lot.
The distance is the RMS difference in 0..255 units.

- A match by name (Ravi & Larochelle's rule, or an ImageNet file name) must be within ``PIXEL_MAX``
  of its source, else it is an error naming both files: a wrong rule never writes wrong masks.
- A match by content (pickles, which hold no names) takes the nearest file of the image's class when
  it is within ``MATCH_MAX`` and at most ``MARGIN`` times the distance of the second nearest;
  otherwise the image is unmatched ("distant" or "ambiguous", e.g. ImageNet's near-duplicate photos),
  never guessed.

Each class's files are decoded once (JPEG draft mode decodes at 1/2..1/8 scale), in worker processes,
and kept per class in a parts folder so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from fewshot_cam.data.decode import IMAGE_ERRORS
from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write

THUMB = 16
PIXEL_MAX = 24.0
MATCH_MAX = 24.0
MARGIN = 0.6


def thumbnail(image: Image.Image, size: int = THUMB) -> np.ndarray:
    """(size, size, 3) uint8 of a PIL image, squashed with a box filter."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BOX))


def thumbnail_files(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, THUMB, THUMB, 3) uint8 thumbnails and (n, 2) int (width, height) of image files (a worker job)."""
    thumbs = np.empty((len(paths), THUMB, THUMB, 3), np.uint8)
    sizes = np.empty((len(paths), 2), np.int64)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                sizes[i] = im.size  # before draft, which shrinks it
                im.draft("RGB", (THUMB * 4, THUMB * 4))
                thumbs[i] = thumbnail(im)
        except FileNotFoundError:
            raise UserError("ImageNet file not found", path) from None
        except IMAGE_ERRORS as err:
            raise UserError(f"corrupt or truncated image ({err})", path) from None
    return thumbs, sizes


def array_thumbnails(images: np.ndarray, size: int = THUMB) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8."""
    if not len(images):
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([thumbnail(Image.fromarray(im), size) for im in images])


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) RMS differences between thumbnails a (n, ...) and b (m, ...), in 0..255 units."""
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.sqrt(np.maximum(squared, 0) / x.shape[1])


def nearest(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of (n, m) distances: the accepted column (-1 if none) and why not ('', 'distant', 'ambiguous')."""
    if dist.shape[1] == 0:
        return np.full(len(dist), -1), np.full(len(dist), "distant")
    order = np.argsort(dist, axis=1)
    d1 = dist[np.arange(len(dist)), order[:, 0]]
    d2 = dist[np.arange(len(dist)), order[:, 1]] if dist.shape[1] > 1 else np.full(len(dist), np.inf)
    reason = np.where(d1 > MATCH_MAX, "distant", np.where(d1 > MARGIN * d2, "ambiguous", ""))
    return np.where(reason == "", order[:, 0], -1), reason


def paired_rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) RMS difference of thumbnail a[i] and b[i], in 0..255 units."""
    diff = a.reshape(len(a), -1).astype(np.float64) - b.reshape(len(b), -1)
    return np.sqrt((diff ** 2).mean(1)) if len(a) else np.zeros(0)


def check_named(dataset_thumbs: np.ndarray, source_thumbs: np.ndarray, wheres: list[str], sources: list[str]) -> None:
    """A name-based match must look like its source (RMS <= PIXEL_MAX), else UserError naming both files."""
    rms = paired_rms(dataset_thumbs, source_thumbs)
    bad = np.flatnonzero(rms > PIXEL_MAX)
    if len(bad):
        i = bad[0]
        raise UserError(f"{wheres[i]} does not look like its ImageNet source {sources[i]} (RMS difference "
                        f"{rms[i]:.1f} > {PIXEL_MAX} of 255; {len(bad)} such images): the name rule does not hold here")


def _part_path(parts: Path, wnid: str) -> Path:
    return parts / f"{wnid}.npz"


def _load_part(path: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """A finished class from an earlier run, if it decoded exactly these files."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if npz["names"].tolist() == names and npz["thumbs"].shape[1] == THUMB:
                return npz["thumbs"], npz["sizes"]
    except (OSError, ValueError, KeyError):
        pass
    return None


def _save_part(path: Path, names: list[str], thumbs: np.ndarray, sizes: np.ndarray) -> None:
    arrays = {"names": np.asarray(names, dtype=str), "thumbs": thumbs, "sizes": sizes}
    atomic_write(path, lambda f: np.savez(f, **arrays))


def class_thumbnails(
    jobs: dict[str, list[Path]], parts: Path, workers: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (wnid, thumbs, sizes) for every class of ``jobs`` (wnid -> its files), decoding each class
    once in ``workers`` processes and keeping the result in ``parts/<wnid>.npz`` (reused on resume)."""
    parts.mkdir(parents=True, exist_ok=True)
    todo = {}
    for wnid, files in jobs.items():
        names = [str(p) for p in files]
        done = _load_part(_part_path(parts, wnid), names)
        if done is not None:
            yield wnid, *done
        else:
            todo[wnid] = names
    if workers <= 1:
        results = ((w, thumbnail_files(names)) for w, names in todo.items())
        yield from _saved(results, todo, parts)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {w: pool.submit(thumbnail_files, names) for w, names in todo.items()}
        yield from _saved(((w, f.result()) for w, f in futures.items()), todo, parts)


def _saved(results, todo: dict[str, list[str]], parts: Path):
    for wnid, (thumbs, sizes) in results:
        _save_part(_part_path(parts, wnid), todo[wnid], thumbs, sizes)
        yield wnid, thumbs, sizes
