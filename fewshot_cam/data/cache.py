"""Decoded-split cache: the second load of a split reads memory-mapped ``.npy`` files.

An entry is a folder ``<cache dir>/<dataset>-<split>-<size>-<key>/`` holding ``images.npy`` (uint8),
``labels.npy``, ``masks.npy`` (when the split has masks) and ``meta.json``. The key hashes the
dataset, the absolute root, the split, the image size and every source file's size and mtime, so
touching a source file makes a new entry. Entries are written to a temporary folder and renamed
into place, so a reader never sees half an entry; every file and the folder are fsynced before the
rename. A damaged entry (a 0-byte or truncated ``.npy``, a bad ``meta.json``, arrays whose shapes
disagree) is detected when it is opened and rebuilt with a warning, never fatal. A temporary folder
left by a killed writer (its lock no longer held, or older than :data:`STALE_SECONDS`) is removed by
the next write into the cache.

The cache folder is ``$FEWSHOT_CAM_CACHE``, else ``~/.cache/fewshot-cam``; ``FEWSHOT_CAM_CACHE=off``
turns caching off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from fewshot_cam.data.decode import Source
from fewshot_cam.data.split import Split
from fewshot_cam.io import fsync_dir

try:
    import fcntl
except ImportError:  # not POSIX: leftovers are found by age alone
    fcntl = None

FORMAT = "fewshot-cam-cache/1"
STALE_SECONDS = 15 * 60
"""A temporary folder without a held lock is only removed once it is this old (a writer may be starting)."""
LOCK = ".writer.lock"
# What opening a damaged entry can raise (np.load of a 0-byte file: EOFError; truncated: ValueError).
DAMAGE = (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, AssertionError)


def cache_dir() -> Path | None:
    """The cache folder, or None when ``FEWSHOT_CAM_CACHE=off``."""
    value = os.environ.get("FEWSHOT_CAM_CACHE", "")
    if value.lower() in ("off", "none", "0"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "fewshot-cam"


def entry_name(source: Source, image_size: int) -> str:
    """``<dataset>-<split>-<size>-<hash>``: the hash covers root, layout and each file's size and mtime."""
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, source.dataset, source.layout, str(source.root), source.split, image_size]).encode())
    for path in source.files:
        st = path.stat()
        h.update(f"\n{path}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return f"{source.dataset}-{source.split}-{image_size}-{h.hexdigest()[:20]}"


def load_entry(folder: Path, image_size: int | None = None) -> Split:
    """Open an entry memory-mapped; ValueError (or another of :data:`DAMAGE`) when it is damaged."""
    meta = json.loads((folder / "meta.json").read_text())
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"meta.json format is not {FORMAT}")
    images = np.load(folder / "images.npy", mmap_mode="c")  # a truncated file fails to map
    labels = np.load(folder / "labels.npy")
    masks = np.load(folder / "masks.npy", mmap_mode="c") if meta["has_masks"] else None
    n = len(meta["class_names"])
    if image_size is not None and images.shape[1:] != (image_size, image_size, 3):
        raise ValueError(f"images.npy has shape {images.shape}, expected (N, {image_size}, {image_size}, 3)")
    if (
        labels.dtype != np.int64
        or labels.shape != images.shape[:1]
        or labels.size
        and not 0 <= labels.min() <= labels.max() < n
    ):
        raise ValueError(f"labels.npy ({labels.shape} {labels.dtype}) does not fit {len(images)} images of {n} classes")
    if masks is not None and (masks.dtype != bool or masks.shape != images.shape[:3]):
        raise ValueError(f"masks.npy has shape {masks.shape}, expected {images.shape[:3]}")
    return Split(images=images, labels=labels, class_names=tuple(meta["class_names"]), masks=masks,
                 name=meta["name"], source=meta["source"])


def _write_file(path: Path, write: Callable) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _lock(tmp: Path):
    """Hold an exclusive lock inside ``tmp`` while writing, so a cleaner knows the writer is alive."""
    f = open(tmp / LOCK, "wb")
    if fcntl is not None:
        fcntl.flock(f, fcntl.LOCK_EX)
    return f


def _abandoned(tmp: Path) -> bool:
    """True when ``tmp`` is a temporary entry whose writer is gone."""
    lock = tmp / LOCK
    if fcntl is not None and lock.is_file():
        try:
            with open(lock, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when f closes
            return True
        except OSError:
            return False  # a live writer holds it
    try:
        return time.time() - tmp.stat().st_mtime > STALE_SECONDS
    except OSError:
        return False


def remove_leftovers(root: Path) -> list[Path]:
    """Delete the ``.tmp-*`` folders killed writers left in ``root``; returns what was removed."""
    removed = []
    for tmp in root.glob(".tmp-*"):
        if tmp.is_dir() and _abandoned(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def save_entry(folder: Path, split: Split) -> None:
    """Write the entry under a temporary name in the same folder, fsync it, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder.parent)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    lock = None
    try:
        lock = _lock(tmp)
        _write_file(tmp / "images.npy", lambda f: np.save(f, np.ascontiguousarray(split.images)))
        _write_file(tmp / "labels.npy", lambda f: np.save(f, split.labels))
        if split.masks is not None:
            _write_file(tmp / "masks.npy", lambda f: np.save(f, split.masks))
        meta = {"format": FORMAT, "class_names": list(split.class_names), "name": split.name,
                "source": split.source, "has_masks": split.masks is not None}
        _write_file(tmp / "meta.json", lambda f: f.write(json.dumps(meta).encode()))
        (tmp / LOCK).unlink()
        fsync_dir(tmp)
        os.rename(tmp, folder)
        fsync_dir(folder.parent)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").is_file():  # not just a concurrent writer that won the race
            raise
    finally:
        if lock is not None:
            lock.close()


def is_cached(source: Source, image_size: int) -> bool:
    root = cache_dir()
    return root is not None and bool(source.files) and (root / entry_name(source, image_size) / "meta.json").is_file()


def cached(source: Source, image_size: int, build: Callable[[], Split]) -> Split:
    """The cached Split for ``source`` at ``image_size``, or ``build()`` it and store it.

    A damaged entry is rebuilt; an unwritable cache folder only warns (the split is still returned).
    """
    root = cache_dir()
    if root is None or not source.files:
        return build()
    folder = root / entry_name(source, image_size)
    if (folder / "meta.json").is_file():
        try:
            return load_entry(folder, image_size)
        except DAMAGE as err:
            warnings.warn(f"rebuilding damaged cache entry {folder} ({err})", stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
    elif folder.is_dir():  # never written by save_entry (it renames a folder with meta.json inside)
        shutil.rmtree(folder, ignore_errors=True)
    split = build()
    try:
        save_entry(folder, split)
    except OSError as err:
        warnings.warn(f"could not write the cache entry {folder} ({err}); set FEWSHOT_CAM_CACHE", stacklevel=2)
    return split
