"""CUB-200-2011's few-shot splits: Chen et al.'s class rule, or a split file the user has.

Chen et al. ("A Closer Look at Few-shot Classification", ICLR 2019), ``filelists/CUB/write_CUB_filelist.py``:
the class folders of ``images/`` sorted by name, class i (from 0) is base when i % 2 == 0, val when
i % 4 == 1 and novel when i % 4 == 3, giving 100 / 50 / 50 classes. Their script also shuffles each
class's images with an unseeded ``random.shuffle``; we keep the order of ``images.txt`` (the episodes
index images within a class, so the order only has to be fixed). Split names: train = base,
val = val, test = novel. ``train_test_split.txt`` (the classification split) plays no part.

A split file replaces the rule: ``data.splits=DIR`` with CloserLook filelists ``base.json`` /
``val.json`` / ``novel.json``, or ``train.csv`` / ``val.csv`` / ``test.csv`` with a ``filename,label``
header (as miniImageNet's), the filename relative to ``images/`` (``<class folder>/<file>.jpg``)
or the bare file name. A file entry is matched to ``images.txt`` by its last two path components,
then by its file name, so absolute paths from another machine work; the images keep the order of
``images.txt`` (CloserLook's lists are shuffled), so a frozen episode file means the same pictures
whichever way the split was chosen.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePath
from typing import Sequence

from fewshot_cam.data import closerlook
from fewshot_cam.data.checks import read_text
from fewshot_cam.errors import UserError

CSV_FILES = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
RULE = "closerlook"


def closerlook_classes(class_folders: Sequence[str], split: str) -> list[str]:
    """The class folders of ``split`` under Chen et al.'s rule (``class_folders`` in any order)."""
    keep = {"train": lambda i: i % 2 == 0, "val": lambda i: i % 4 == 1, "test": lambda i: i % 4 == 3}[split]
    return [name for i, name in enumerate(sorted(class_folders)) if keep(i)]


def read_split_csv(path: Path) -> list[tuple[str, str]]:
    """(filename, label) per row of a ``filename,label`` csv."""
    rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    header = [h.strip() for h in (rows[0] if rows else [])]
    if header[:2] != ["filename", "label"]:
        raise UserError(f"expected header 'filename,label', got {','.join(header)!r}", path)
    bad = next((n for n, row in enumerate(rows[1:], start=2) if row and len(row) < 2), None)
    if bad is not None:
        raise UserError(f"line {bad}: expected 'filename,label'", path)
    return [(row[0].strip(), row[1].strip()) for row in rows[1:] if row]


def split_file(folder: Path, split: str) -> Path:
    """The split's file in ``folder``: the CloserLook JSON filelist, else the csv."""
    for path in (folder / closerlook.FILES[split], folder / CSV_FILES[split]):
        if path.is_file():
            return path
    raise UserError(f"split '{split}' missing: neither {closerlook.FILES[split]} nor {CSV_FILES[split]} found "
                    "in the data.splits folder", folder)


def split_entries(folder: Path, split: str) -> tuple[Path, list[tuple[str, str]]]:
    """(the file, [(stored image name, class name)]) of a user split file."""
    path = split_file(folder, split)
    return path, closerlook.read_filelist(path) if path.suffix == ".json" else read_split_csv(path)


def match_images(entries: list[tuple[str, str]], relpaths: Sequence[str], path: Path) -> list[tuple[int, str]]:
    """(index into ``relpaths`` (images.txt order), class name) of every split-file entry."""
    by_rel = {rel: i for i, rel in enumerate(relpaths)}
    by_name: dict[str, int] = {}
    for i, rel in enumerate(relpaths):
        by_name.setdefault(PurePath(rel).name, i)
    matched, seen = [], set()
    for stored, label in entries:
        parts = PurePath(stored.replace("\\", "/")).parts
        i = by_rel.get("/".join(parts[-2:]), by_name.get(parts[-1] if parts else ""))
        if i is None:
            raise UserError(f"split file names {stored!r}, which images.txt does not list", path)
        if i in seen:
            raise UserError(f"split file names {relpaths[i]} twice ({stored!r})", path)
        seen.add(i)
        matched.append((i, label))
    return matched
