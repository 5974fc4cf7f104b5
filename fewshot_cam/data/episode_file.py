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
    check_settings(record, Path(path))
    return {**{k: record[k] for k in HEADER_KEYS}, "classes": len(record["classes"])}


def read_episode_file(path: str | Path) -> EpisodeFile:
    """Read and check the structure of an episode file; UserError on anything missing or inconsistent."""
    path = Path(path)
    record = _load_json(path)
    header = {k: record[k] for k in HEADER_KEYS}
    check_settings(header, path)
    classes = record["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise UserError("corrupt episode file: 'classes' must be a list of class names", path)
    if len(set(classes)) != len(classes):
        raise UserError(f"corrupt episode file: class {_first_repeat(classes)!r} is listed twice in 'classes'", path)
    class_ids = _integer_array(record["episode_classes"], "episode_classes", path)
    image_ids = _integer_array(record["episode_images"], "episode_images", path)
    ways, shots, queries, n = (header[k] for k in ("ways", "shots", "queries", "n"))
    want = (n, ways, shots + queries)
    if class_ids.shape != want[:2] or image_ids.shape != want:
        raise UserError(
            f"corrupt episode file: arrays of shape {class_ids.shape} and {image_ids.shape}, "
            f"expected {want[:2]} and {want} for n={n}, ways={ways}, shots={shots}, queries={queries}",
            path,
        )
    check_indices(class_ids, image_ids, len(classes), path)
    return EpisodeFile(header, classes, class_ids, image_ids)


def _first_repeat(values: list) -> object:
    seen = set()
    return next(v for v in values if v in seen or seen.add(v))


def check_settings(header: dict, path: Path) -> None:
    """ways, shots, queries, n: whole numbers >= 1; seed: a whole number or null."""
    for key in ("ways", "shots", "queries", "n"):
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"corrupt episode file: {key} must be a whole number >= 1, found {value!r}", path)
    seed = header["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UserError(f"corrupt episode file: seed must be a whole number or null, found {seed!r}", path)


def _integer_array(values: object, key: str, path: Path) -> np.ndarray:
    """A nested JSON list of integers as an int64 array (floats, bools and ragged lists refused)."""
    try:
        array = np.asarray(values)
    except ValueError as err:
        raise UserError(f"corrupt episode file: {key} is not a rectangular array ({err})", path) from None
    if array.size and array.dtype.kind not in "iu":
        raise UserError(f"corrupt episode file: {key} must hold integers, found {array.dtype} values", path)
    try:
        return array.astype(np.int64)
    except OverflowError:
        raise UserError(f"corrupt episode file: {key} holds an integer too large for an index", path) from None


def check_indices(class_ids: np.ndarray, image_ids: np.ndarray, num_classes: int, path: Path) -> None:
    """Indices in range; within an episode, distinct classes and distinct images (queries never repeat
    supports). UserError naming the first bad episode."""
    def first(bad: np.ndarray) -> int:
        return int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])

    if class_ids.size == 0:
        return
    out = (class_ids < 0) | (class_ids >= num_classes)
    if out.any():
        e = first(out)
        raise UserError(f"corrupt episode file: episode {e} names class index {class_ids[e][out[e]][0]}, "
                        f"outside [0, {num_classes})", path)
    if (image_ids < 0).any():
        e = first(image_ids < 0)
        raise UserError(f"corrupt episode file: episode {e} has a negative image index", path)
    ordered = np.sort(class_ids, axis=1)  # (E, N)
    repeat = ordered[:, 1:] == ordered[:, :-1]
    if repeat.any():
        raise UserError(f"corrupt episode file: episode {first(repeat)} uses a class twice", path)
    ordered = np.sort(image_ids, axis=2)  # (E, N, K+Q)
    repeat = ordered[..., 1:] == ordered[..., :-1]
    if repeat.any():
        raise UserError(f"corrupt episode file: episode {first(repeat)} uses an image twice "
                        "(a query repeats a support, or an image is drawn twice)", path)


SHIPPED_DIR = Path(fewshot_cam.__file__).resolve().parent / "episodes_data"
"""The frozen episode files shipped with the package (scripts/make_shipped_episodes.py writes them)."""


def episode_dirs() -> list[Path]:
    """Folders searched for frozen episodes: $FEWSHOT_CAM_EPISODES (os.pathsep-separated), then the
    package's ``fewshot_cam/episodes_data/`` (package data: the same folder in a checkout and after
    ``pip install .``)."""
    extra = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return extra + [SHIPPED_DIR]


def episode_files() -> list[Path]:
    """Every ``*.json`` / ``*.json.gz`` in :func:`episode_dirs`, folder by folder, sorted by name."""
    found = []
    for folder in episode_dirs():
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.name.endswith((".json", ".json.gz")))
    return found
