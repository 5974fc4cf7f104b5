"""CloserLook's JSON filelists (Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019,
``filelists/*/write_*_filelist.py``) as a dataset format: ``--dataset filelist --root DIR``.

``DIR`` holds ``base.json``, ``val.json`` and ``novel.json`` (splits train, val, test), each one object::

    {"label_names": [name, ...], "image_names": [path, ...], "image_labels": [i, ...]}

``image_labels[k]`` indexes ``label_names`` (CloserLook writes every class of the dataset there, so a
split's labels need not start at 0); the class of image k is ``label_names[image_labels[k]]``. Paths
are absolute on the machine that wrote the lists: a path that does not exist is resolved against the
image root (``--set data.images=DIR``, default ``--root``) by its trailing components, e.g.
``/home/x/CUB_200_2011/images/001.A/a.jpg`` as ``ROOT/CUB_200_2011/images/001.A/a.jpg``, then
``ROOT/images/001.A/a.jpg``, ... The first file found nowhere is named in the error. The lists have
no masks. The same lists can choose CUB's splits with masks: ``--dataset cub --set data.splits=DIR``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from fewshot_cam.data.decode import Source, decode_image, decode_split
from fewshot_cam.data.options import ReadOptions
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError

NAME = "filelist"
FILES = {"train": "base.json", "val": "val.json", "test": "novel.json"}
LAYOUT = "closerlook-json"


def read_filelist(path: Path) -> list[tuple[str, str]]:
    """(stored image name, class name) per entry of a CloserLook JSON filelist, checked."""
    if not path.is_file():
        raise UserError("filelist not found", path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"not a JSON filelist ({err})", path) from None
    keys = ("label_names", "image_names", "image_labels")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in keys):
        raise UserError(f"expected a JSON object with lists {', '.join(keys)}", path)
    names, images, labels = (data[k] for k in keys)
    if len(images) != len(labels):
        raise UserError(f"{len(images)} image_names but {len(labels)} image_labels", path)
    bad = next((k for k, label in enumerate(labels)
                if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(names)), None)
    if bad is not None:
        raise UserError(f"image_labels[{bad}] = {labels[bad]!r} is not an index into the "
                        f"{len(names)} label_names", path)
    return [(str(image), str(names[label])) for image, label in zip(images, labels)]


class Resolver:
    """Stored path -> existing file: as stored, else its shortest-stripped suffix under ``root``.

    The number of leading components stripped from the last hit is tried first, so a list written on
    one machine costs one ``stat`` per file.
    """

    def __init__(self, root: Path) -> None:
        self.root, self.strip = root, None

    def __call__(self, stored: str, where: Path) -> Path:
        path = Path(stored)
        if path.is_absolute() and path.is_file():
            return path
        parts = path.parts[1:] if path.is_absolute() else path.parts
        order = range(len(parts)) if self.strip is None else [self.strip, *range(len(parts))]
        for k in order:
            candidate = self.root.joinpath(*parts[k:])
            if k < len(parts) and candidate.is_file():
                self.strip = k
                return candidate
        raise UserError(f"image {stored!r} not found, neither as stored nor under {self.root}", where)


def filelist_path(root: Path, split: str) -> Path:
    return root / FILES[split]


def detect_layout(root: Path, options: ReadOptions) -> str:
    if not any(filelist_path(root, s).is_file() for s in FILES):
        raise UserError(f"no CloserLook filelists found: expected {', '.join(FILES.values())}", root)
    return LAYOUT


def entries(root: Path, split: str, options: ReadOptions) -> list[tuple[Path, str]]:
    """(resolved image file, class name) per entry of the split's filelist."""
    path = filelist_path(root, split)
    if not path.is_file():
        raise UserError(f"split '{split}' missing: filelist not found", path)
    resolve = Resolver(Path(options.images).expanduser().resolve() if options.images else root)
    return [(resolve(image, path), label) for image, label in read_filelist(path)]


def locate(root: Path, split: str, options: ReadOptions) -> Source:
    detect_layout(root, options)
    files = tuple(p for p, _ in entries(root, split, options))
    return Source(NAME, LAYOUT, root, split, (filelist_path(root, split),) + files)


def read(source: Source, image_size: int) -> Split:
    files = source.files[1:]
    names = [label for _, label in read_filelist(source.files[0])]
    return decode_split(source, names, files, lambda p: decode_image(p, image_size), str, image_size)


def class_sizes(source: Source) -> dict[str, int]:
    return dict(Counter(label for _, label in read_filelist(source.files[0])))
