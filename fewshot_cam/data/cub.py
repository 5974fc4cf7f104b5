"""CUB-200-2011 (Wah et al. 2011) as distributed: ``--dataset cub --root CUB_200_2011/`` (or its parent).

Read from ``CUB_200_2011/``: ``images/<class folder>/*.jpg``, ``images.txt`` (id, path under
``images/``), ``image_class_labels.txt`` (id, class id), ``classes.txt`` (class id, class folder) and
``bounding_boxes.txt`` (id, x, y, width, height in pixels of the original image, floats). Images keep
the order of ``images.txt``; a class is named by its folder (e.g. ``001.Black_footed_Albatross``).
Splits: :mod:`fewshot_cam.data.cub_splits` (Chen et al.'s rule by default).

Masks (every image has one):

- from the segmentations of the companion archive, ``segmentations/<class folder>/<image stem>.png``,
  found inside ``CUB_200_2011/``, beside it, or at ``--set data.segmentations=PATH``. They are soft,
  anti-aliased greyscale: the grey mask goes through exactly the image's crop and bilinear resize,
  then a pixel is foreground when its value > ``data.segmentation_threshold`` x 255 (default 0.5).
- from the bounding box when there is no segmentation (``data.masks=auto``, per image) or always
  (``data.masks=boxes``): a 0/255 picture of the box, then the same crop, resize and threshold.

Boxes become whole pixels by rounding every edge (x, y, x + w, y + h) half up, clipped to the image
and at least one pixel wide: columns ``[round(x), round(x + w))``. ``--set data.crop=box`` crops each
image and its mask to that box before resizing (with ``data.masks=boxes`` the mask is then all
foreground). The layout string (``data info``) says where the masks come from.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np
from PIL import Image

from fewshot_cam.data.checks import read_text
from fewshot_cam.data.cub_splits import RULE, closerlook_classes, match_images, split_entries
from fewshot_cam.data.decode import Source, canonical_order, decode_split, parallel_fill, resize
from fewshot_cam.data.options import ReadOptions
from fewshot_cam.data.pixels import BadPixels, to_rgb
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError

NAME = "cub"
TEXT_FILES = ("images.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt")
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Entry:
    """One image of a split: file, class name, box (x, y, w, h) and segmentation file (or None)."""

    image: Path
    label: str
    box: Box
    segmentation: Path | None


@dataclass(frozen=True)
class CubSource(Source):
    """A :class:`Source` that also carries the split's entries and the read options."""

    entries: tuple[Entry, ...] = ()
    options: ReadOptions = field(default_factory=ReadOptions)


def find_folder(root: Path) -> Path:
    """``root`` itself when it holds ``images.txt``, else ``root/CUB_200_2011``."""
    for folder in (root, root / "CUB_200_2011"):
        if (folder / "images.txt").is_file():
            return folder
    raise UserError("no CUB-200-2011 found: expected CUB_200_2011/ with images/, " + ", ".join(TEXT_FILES)
                    + " (--root names CUB_200_2011/ or its parent)", root)


def read_table(path: Path, width: int) -> dict[int, list[str]]:
    """``id field...`` lines -> {id: [width fields]} (the last field may hold spaces)."""
    if not path.is_file():
        raise UserError("CUB file not found", path)
    table = {}
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split(None, width)
        if not fields:
            continue
        if len(fields) != width + 1 or not fields[0].isdigit():
            raise UserError(f"line {n}: expected an id and {width} field(s), got {line!r}", path)
        table[int(fields[0])] = fields[1:]
    return table


def parse_box(fields: list[str], where: str, path: Path) -> Box:
    try:
        x, y, w, h = (float(v) for v in fields)
    except ValueError:
        raise UserError(f"{where}: box {' '.join(fields)!r} is not four numbers", path) from None
    if not (w > 0 and h > 0 and all(map(math.isfinite, (x, y, w, h)))):
        raise UserError(f"{where}: box {' '.join(fields)!r} has no area", path)
    return x, y, w, h


def read_catalog(folder: Path) -> tuple[list[str], list[Box]]:
    """Per image of ``images.txt`` (by id): path under ``images/`` and box; class ids checked."""
    images, labels, classes, boxes = (read_table(folder / name, 4 if name.startswith("bounding") else 1)
                                      for name in TEXT_FILES)
    relpaths, out_boxes = [], []
    for image_id in sorted(images):
        rel = images[image_id][0]
        for table, name in ((labels, "image_class_labels.txt"), (boxes, "bounding_boxes.txt")):
            if image_id not in table:
                raise UserError(f"image {image_id} ({rel}) is missing", folder / name)
        class_name = classes.get(int(labels[image_id][0]), ["?"])[0]
        if PurePath(rel).parts[0] != class_name:
            raise UserError(f"image {image_id} ({rel}) has class {labels[image_id][0]} = {class_name!r} "
                            "in classes.txt, not its folder", folder / "image_class_labels.txt")
        relpaths.append(rel)
        out_boxes.append(parse_box(boxes[image_id], f"image {image_id}", folder / "bounding_boxes.txt"))
    return relpaths, out_boxes


def select(relpaths: list[str], split: str, options: ReadOptions) -> tuple[list[tuple[int, str]], Path | None]:
    """(index into the catalogue, class name) of the split's images, and the split file used (or None)."""
    if options.splits == RULE:
        folders = [PurePath(rel).parts[0] for rel in relpaths]
        keep = set(closerlook_classes(set(folders), split))
        return [(i, name) for i, name in enumerate(folders) if name in keep], None
    folder = Path(options.splits).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"data.splits is neither '{RULE}' nor a folder of split files", folder)
    path, entries = split_entries(folder, split)
    return sorted(match_images(entries, relpaths, path)), path  # images.txt order, whatever the file's


def segmentation_folder(folder: Path, options: ReadOptions) -> Path | None:
    """Where the segmentations are (None: masks from the boxes)."""
    if options.masks == "boxes":
        return None
    if options.segmentations:
        path = Path(options.segmentations).expanduser().resolve()
        if not path.is_dir():
            raise UserError("data.segmentations folder not found", path)
        return path
    found = next((p for p in (folder / "segmentations", folder.parent / "segmentations") if p.is_dir()), None)
    if found is None and options.masks == "segmentations":
        raise UserError("data.masks=segmentations but no segmentations/ folder inside or beside", folder)
    return found


def describe(seg: Path | None, options: ReadOptions) -> str:
    """The layout string: where masks come from, the crop and the splits (also part of the cache key)."""
    if seg is None:
        masks = "masks from bounding boxes" + ("" if options.masks == "boxes" else " (no segmentations found)")
    else:
        masks = f"masks from segmentations > {options.segmentation_threshold:g} x 255 in {seg}"
        masks += "" if options.masks == "segmentations" else " (else from the box)"
    return f"CUB_200_2011, {masks}, crop {options.crop}, splits {options.splits}"


def detect_layout(root: Path, options: ReadOptions) -> str:
    folder = find_folder(root)
    return describe(segmentation_folder(folder, options), options)


def locate(root: Path, split: str, options: ReadOptions) -> CubSource:
    folder = find_folder(root)
    relpaths, boxes = read_catalog(folder)
    chosen, split_path = select(relpaths, split, options)
    seg = segmentation_folder(folder, options)
    entries = []
    for i, label in chosen:
        mask = None if seg is None else (seg / relpaths[i]).with_suffix(".png")
        if mask is not None and not mask.is_file():
            if options.masks == "segmentations":
                raise UserError(f"segmentation of image {relpaths[i]} missing (data.masks=segmentations)", mask)
            mask = None
        entries.append(Entry(folder / "images" / relpaths[i], label, boxes[i], mask))
    files = tuple(folder / name for name in TEXT_FILES) + (() if split_path is None else (split_path,))
    files += tuple(e.image for e in entries) + tuple(e.segmentation for e in entries if e.segmentation)
    return CubSource(NAME, describe(seg, options), root, split, files, tuple(entries), options)


def pixel_box(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, w, h) -> PIL's (left, top, right, bottom): edges rounded half up, clipped, >= 1 pixel."""
    x, y, w, h = box
    width, height = size
    left = min(max(math.floor(x + 0.5), 0), width - 1)
    top = min(max(math.floor(y + 0.5), 0), height - 1)
    right = min(max(math.floor(x + w + 0.5), left + 1), width)
    bottom = min(max(math.floor(y + h + 0.5), top + 1), height)
    return left, top, right, bottom


def load_image(entry: Entry, size: int, crop: str) -> np.ndarray:
    """(size, size, 3) uint8: the image, cropped to its box when ``crop == 'box'``, resized."""
    with Image.open(entry.image) as im:
        rgb = im.convert("RGB")
    if crop == "box":
        rgb = rgb.crop(pixel_box(entry.box, rgb.size))
    return np.asarray(resize(rgb, size))


def grey_mask(entry: Entry) -> Image.Image:
    """The mask at the image's original size, greyscale 0-255: the segmentation or the box."""
    with Image.open(entry.image) as im:
        size = im.size
    if entry.segmentation is None:
        grey = Image.new("L", size, 0)
        grey.paste(255, pixel_box(entry.box, size))
        return grey
    with Image.open(entry.segmentation) as seg:
        try:  # by value, as every other reader: a 16-bit segmentation is scaled, not clipped to white
            grey = to_rgb(seg).convert("L")
        except BadPixels as err:
            raise UserError(str(err), entry.segmentation) from None
    if grey.size != size:
        raise UserError(f"segmentation is {grey.size[0]}x{grey.size[1]} but its image {entry.image} is "
                        f"{size[0]}x{size[1]}", entry.segmentation)
    return grey


def load_mask(entry: Entry, size: int, options: ReadOptions) -> np.ndarray:
    """(size, size) bool: the grey mask through the image's crop and resize, then the threshold."""
    grey = grey_mask(entry)
    if options.crop == "box":
        grey = grey.crop(pixel_box(entry.box, grey.size))
    return np.asarray(resize(grey, size)) > options.segmentation_threshold * 255


def read(source: CubSource, image_size: int) -> Split:
    entries, options = source.entries, source.options
    names = [e.label for e in entries]
    split = decode_split(source, names, entries, lambda e: load_image(e, image_size, options.crop),
                         lambda e: str(e.image), image_size)
    ordered = [entries[i] for i in canonical_order(names)[1]]
    masks = np.empty((len(ordered), image_size, image_size), bool)
    parallel_fill(masks, ordered, lambda e: load_mask(e, image_size, options),
                  lambda i: str(ordered[i].segmentation or ordered[i].image), f"{split.name} masks")
    return Split(split.images, split.labels, split.class_names, masks, name=split.name, source=split.source)


def class_sizes(source: CubSource) -> dict[str, int]:
    return dict(Counter(e.label for e in source.entries))
