"""mini-ImageNet (Vinyals et al. 2016; splits of Ravi & Larochelle 2017) from a local root.

Two layouts, detected from what the root holds:

- ``pickle`` (learn2learn's cache): ``mini-imagenet-cache-{train,validation,test}.pkl``, each a dict
  with ``image_data`` (N, 84, 84, 3) uint8 and ``class_dict`` (class name -> row indices).
- ``csv`` (Ravi & Larochelle): ``images/*.jpg`` plus ``train.csv``, ``val.csv``, ``test.csv``
  with a ``filename,label`` header.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np

from fewshot_cam.data.checks import check_class_rows, check_csv_rows, check_image_array, integer_array, read_text
from fewshot_cam.data.decode import (
    Source,
    canonical_order,
    decode_image,
    decode_split,
    load_pickle,
    permute_rows_inplace,
    resize_array,
    str_keys,
)
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError

NAME = "mini-imagenet"
PICKLE_SPLIT = {"train": "train", "val": "validation", "test": "test"}


def pickle_path(root: Path, split: str) -> Path:
    return root / f"mini-imagenet-cache-{PICKLE_SPLIT[split]}.pkl"


def detect_layout(root: Path) -> str:
    """'pickle' when any learn2learn cache pickle is in ``root``, else 'csv' when ``images/`` and a csv are."""
    if any(pickle_path(root, s).is_file() for s in PICKLE_SPLIT):
        return "pickle"
    if (root / "images").is_dir() and any((root / f"{s}.csv").is_file() for s in PICKLE_SPLIT):
        return "csv"
    raise UserError(
        "no mini-ImageNet found: expected mini-imagenet-cache-{train,validation,test}.pkl "
        "or images/ with {train,val,test}.csv", root)


def locate(root: Path, split: str) -> Source:
    layout = detect_layout(root)
    if layout == "pickle":
        path = pickle_path(root, split)
        if not path.is_file():
            raise UserError(f"split '{split}' missing: file not found", path)
        return Source(NAME, layout, root, split, (path,))
    rows = read_csv(root, split)
    return Source(NAME, layout, root, split, (root / f"{split}.csv",) + tuple(path for path, _ in rows))


def read_csv(root: Path, split: str) -> list[tuple[Path, str]]:
    """(image path, label) per row of ``{split}.csv``; every named file must exist."""
    path = root / f"{split}.csv"
    if not path.is_file():
        raise UserError(f"split '{split}' missing: file not found", path)
    try:
        table = list(csv.reader(io.StringIO(read_text(path), newline="")))
    except csv.Error as err:
        raise UserError(f"not a csv file ({err})", path) from None
    header = [h.strip() for h in (table[0] if table else [])]
    if header[:2] != ["filename", "label"]:
        raise UserError(f"expected header 'filename,label', got {','.join(header)!r}", path)
    named = []
    for line, row in enumerate(table[1:], start=2):
        if not row:
            continue
        if len(row) < 2:
            raise UserError(f"line {line}: expected 'filename,label', got {','.join(row)!r}", path)
        named.append((line, row[0].strip(), row[1].strip()))
    check_csv_rows(named, path)
    rows = []
    for line, name, label in named:
        image = root / "images" / name
        if not image.is_file():
            raise UserError(f"line {line} names a missing image file {image}", path)
        rows.append((image, label))
    return rows


def read_cache_pickle(path: Path) -> tuple[np.ndarray, dict[str, list[int]]]:
    """``image_data`` and ``class_dict`` of a learn2learn cache pickle, checked."""
    data = load_pickle(path)
    data = str_keys(data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
        raise UserError("expected a dict with keys 'image_data' and 'class_dict'", path)
    images = check_image_array(data["image_data"], "image_data", path)
    if not isinstance(data["class_dict"], dict):
        raise UserError(f"class_dict must be a dict, found {type(data['class_dict']).__name__}", path)
    odd = [k for k in data["class_dict"] if not isinstance(k, (str, bytes, np.str_, np.bytes_))]
    if odd:
        raise UserError(f"class_dict key {odd[0]!r} is not a class name (str or bytes)", path)
    rows = {k: integer_array(v, f"class_dict[{k!r}]", path) for k, v in str_keys(data["class_dict"]).items()}
    check_class_rows(rows, len(images), path)
    return images, {k: v.tolist() for k, v in rows.items()}


def read(source: Source, image_size: int) -> Split:
    if source.layout == "pickle":
        path = source.files[0]
        images, classes = read_cache_pickle(path)
        names = [c for c, ix in classes.items() for _ in ix]
        rows = [i for ix in classes.values() for i in ix]
        if images.shape[1:3] == (image_size, image_size) and images.flags.writeable and rows:
            return _reorder_in_place(source, images, names, rows)
        return decode_split(source, names, rows, lambda i: resize_array(images[i], image_size),
                            lambda i: f"{path} [image {i}]", image_size)
    rows = read_csv(source.root, source.split)
    return decode_split(source, [label for _, label in rows], [p for p, _ in rows],
                        lambda p: decode_image(p, image_size), str, image_size)


def _reorder_in_place(source: Source, images: np.ndarray, names: list[str], rows: list[int]) -> Split:
    """The unpickled array already at ``image_size``: put its rows in canonical order in place (no second
    copy of the split in memory; BENCHMARKS.md measures the peak)."""
    class_names, order, labels = canonical_order(names)
    ordered = permute_rows_inplace(images, np.asarray(rows, np.int64)[order])
    return Split(ordered, labels, class_names, None, name=f"{source.dataset}/{source.split}", source=str(source.root))


def class_sizes(source: Source) -> dict[str, int]:
    if source.layout == "pickle":
        return {c: len(ix) for c, ix in read_cache_pickle(source.files[0])[1].items()}
    return dict(Counter(label for _, label in read_csv(source.root, source.split)))
