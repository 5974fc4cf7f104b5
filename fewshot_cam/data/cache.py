"""Decoded-split cache: the second load of a split reads memory-mapped ``.npy`` files.

An entry is a folder ``<cache dir>/<dataset>-<split>-<size>-<key>/`` holding ``images.npy`` (uint8),
``labels.npy``, ``masks.npy`` (when the split has masks) and ``meta.json``. The key hashes the
dataset, the absolute root, the split, the image size and every source file's size and mtime, so
touching a source file makes a new entry. Entries are written to a temporary folder and renamed
into place, so a reader never sees half an entry.

The cache folder is ``$FEWSHOT_CAM_CACHE``, else ``~/.cache/fewshot-cam``; ``FEWSHOT_CAM_CACHE=off``
turns caching off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from fewshot_cam.data.decode import Source
from fewshot_cam.data.split import Split

FORMAT = "fewshot-cam-cache/1"


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


def load_entry(folder: Path) -> Split:
    meta = json.loads((folder / "meta.json").read_text())
    masks = np.load(folder / "masks.npy", mmap_mode="c") if meta["has_masks"] else None
    return Split(
        images=np.load(folder / "images.npy", mmap_mode="c"),
        labels=np.load(folder / "labels.npy"),
        class_names=tuple(meta["class_names"]),
        masks=masks,
        name=meta["name"],
        source=meta["source"],
    )


def save_entry(folder: Path, split: Split) -> None:
    """Write the entry under a temporary name in the same folder, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        np.save(tmp / "images.npy", np.ascontiguousarray(split.images))
        np.save(tmp / "labels.npy", split.labels)
        if split.masks is not None:
            np.save(tmp / "masks.npy", split.masks)
        meta = {"format": FORMAT, "class_names": list(split.class_names), "name": split.name,
                "source": split.source, "has_masks": split.masks is not None}
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").is_file():  # not just a concurrent writer that won the race
            raise


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
            return load_entry(folder)
        except (OSError, ValueError, KeyError, AssertionError) as err:
            warnings.warn(f"rebuilding damaged cache entry {folder} ({err})", stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
    split = build()
    try:
        save_entry(folder, split)
    except OSError as err:
        warnings.warn(f"could not write the cache entry {folder} ({err}); set FEWSHOT_CAM_CACHE", stacklevel=2)
    return split
