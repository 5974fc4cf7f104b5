"""The frozen-episode file format ``fewshot-cam-episodes/1``: JSON, optionally gzipped (``.json.gz``).

One object, written without indentation::

    {"format": "fewshot-cam-episodes/1", "dataset": "synthetic", "split": "test",
     "ways": 5, "shots": 1, "queries": 15, "n": 2000, "seed": 0, "fingerprint": "<16 hex>",
     "classes": ["<name>", ...],                  # the classes used, sorted
     "episode_classes": [[c, ...], ...],          # (E, N) indices into "classes"
     "episode_images": [[[j, ...], ...], ...]}    # (E, N, K+Q) image index within the class

"Image index within the class" counts the class's images in canonical order (see ``Split``), so a
file indexes the same pictures whatever format the dataset is stored in; the fingerprint (class names
and sizes) checks that the split is the one the file was made for. This module only reads and writes
the format; ``episodes.py`` converts to and from split indices.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import fewshot_cam
from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write

FORMAT = "fewshot-cam-episodes/1"
HEADER_KEYS = ("format", "dataset", "split", "ways", "shots", "queries", "n", "seed", "fingerprint")
ENV_VAR = "FEWSHOT_CAM_EPISODES"


@dataclass(frozen=True, eq=False)
class EpisodeFile:
    """The decoded contents: header (HEADER_KEYS), used class names, class ids (E, N), image ids (E, N, K+Q)."""

    header: dict
    classes: list[str]
    class_ids: np.ndarray
    image_ids: np.ndarray


def write_episode_file(path: str | Path, contents: EpisodeFile) -> Path:
    """Write atomically (temporary file in the same folder, then rename); gzip when the name ends in .gz."""
    path = Path(path)
    record = {key: contents.header[key] for key in HEADER_KEYS}
    record.update(
        classes=list(contents.classes),
        episode_classes=contents.class_ids.tolist(),
        episode_images=contents.image_ids.tolist(),
    )
    data = json.dumps(record, separators=(",", ":")).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    atomic_write(path, data)
    return path


def _load_json(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read episode file ({err.strerror or err})", path) from None
    try:
        if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
            data = gzip.decompress(data)
        record = json.loads(data)
    except (OSError, EOFError, ValueError) as err:
        raise UserError(f"corrupt episode file, not (gzipped) JSON: {err}", path) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise UserError(f"not an episode file: format is {found!r}, expected {FORMAT!r}", path)
    missing = [k for k in HEADER_KEYS + ("classes", "episode_classes", "episode_images") if k not in record]
    if missing:
        raise UserError(f"corrupt episode file: missing {', '.join(missing)}", path)
    return record


def read_episode_header(path: str | Path) -> dict:
    """The header fields (HEADER_KEYS) plus ``classes`` (number of classes used)."""
    record = _load_json(Path(path))
    return {**{k: record[k] for k in HEADER_KEYS}, "classes": len(record["classes"])}


def read_episode_file(path: str | Path) -> EpisodeFile:
    """Read and check the structure of an episode file; UserError on anything missing or inconsistent."""
    path = Path(path)
    record = _load_json(path)
    header = {k: record[k] for k in HEADER_KEYS}
    ways, shots, queries, n = (header[k] for k in ("ways", "shots", "queries", "n"))
    try:
        class_ids = np.asarray(record["episode_classes"], dtype=np.int64)
        image_ids = np.asarray(record["episode_images"], dtype=np.int64)
        classes = [str(c) for c in record["classes"]]
    except (TypeError, ValueError, OverflowError) as err:
        raise UserError(f"corrupt episode file: episode arrays are not integer arrays ({err})", path) from None
    want = (n, ways, shots + queries)
    if class_ids.shape != want[:2] or image_ids.shape != want:
        raise UserError(
            f"corrupt episode file: arrays of shape {class_ids.shape} and {image_ids.shape}, "
            f"expected {want[:2]} and {want} for n={n}, ways={ways}, shots={shots}, queries={queries}",
            path,
        )
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= len(classes) or image_ids.min() < 0):
        raise UserError("corrupt episode file: class or image index out of range", path)
    return EpisodeFile(header, classes, class_ids, image_ids)


def episode_dirs() -> list[Path]:
    """Folders searched for frozen episodes: $FEWSHOT_CAM_EPISODES (os.pathsep-separated), then the
    repository's ``episodes/`` folder."""
    extra = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return extra + [Path(fewshot_cam.__file__).resolve().parent.parent / "episodes"]


def episode_files() -> list[Path]:
    """Every ``*.json`` / ``*.json.gz`` in :func:`episode_dirs`, folder by folder, sorted by name."""
    found = []
    for folder in episode_dirs():
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.name.endswith((".json", ".json.gz")))
    return found
