"""ImageNet's training-set files and box annotations, as people have them on disk.

- The train folder: ``DIR/<wnid>/<wnid>_<number>.JPEG``. A class's files in *numeric* order of the
  number after ``_`` (``_99`` before ``_100``) is the order mini-imagenet-tools' Ravi & Larochelle
  generator counts in.
- Box annotations, either the ILSVRC2012 train box archive (one PASCAL VOC XML per image,
  ``<wnid>/<wnid>_<number>.xml``, with ``size`` and one ``object/bndbox`` per box) or the
  localisation challenge's ``LOC_train_solution.csv`` (``ImageId,PredictionString``, the string
  holding repeated ``wnid xmin ymin xmax ymax``; no image size, so it comes from the JPEG header).
- The synset list (``LOC_synset_mapping.txt`` or ``words.txt``): ``wnid words`` per line, used when a
  dataset names its classes by words.

Coordinates are pixel indices as the annotations write them; a box covers columns ``xmin..xmax`` and
rows ``ymin..ymax`` inclusive. XML is parsed without DTDs or entities: with defusedxml when it is
installed, else any file declaring a DOCTYPE or ENTITY is rejected before parsing.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewshot_cam.data.checks import read_text
from fewshot_cam.errors import UserError

WNID = re.compile(r"n\d{8}")
IMAGENET_NAME = re.compile(r"(n\d{8})_(\d+)")
JPEG_SUFFIXES = (".jpeg", ".jpg", ".png")

try:  # optional: the stricter parser
    from defusedxml.ElementTree import fromstring as _xml_fromstring
except ImportError:  # pragma: no cover - depends on the environment
    _xml_fromstring = None


@dataclass(frozen=True)
class Annotation:
    """The boxes of one ImageNet image. boxes: (B, 4) float (xmin, ymin, xmax, ymax); wnids: B labels."""

    path: str
    size: tuple[int, int] | None  # (width, height) as annotated, None when the format has none
    wnids: tuple[str, ...]
    boxes: np.ndarray

    def own(self, wnid: str) -> np.ndarray:
        """(B', 4) the boxes labelled ``wnid`` (only the image's own class counts)."""
        return self.boxes[[w == wnid for w in self.wnids]].reshape(-1, 4)


def file_number(path: Path) -> int:
    """``n01532829_1234.JPEG`` -> 1234 (UserError naming the file otherwise)."""
    match = IMAGENET_NAME.fullmatch(path.stem)
    if match is None:
        raise UserError("not an ImageNet train file name (<wnid>_<number>.JPEG)", path)
    return int(match.group(2))


def class_files(train_dir: Path, wnid: str) -> list[Path]:
    """A class's ImageNet train files, sorted by the number after ``_`` (numeric, not string order)."""
    folder = train_dir / wnid
    if not folder.is_dir():
        raise UserError(f"class {wnid} has no folder in the ImageNet train folder", folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file()]
    return sorted(files, key=file_number)




def parse_xml(data: bytes, path: Path) -> ET.Element:
    """An XML document without DTD or entities (defusedxml when installed)."""
    if _xml_fromstring is None and (b"<!DOCTYPE" in data or b"<!ENTITY" in data):
        raise UserError("XML with a DOCTYPE or ENTITY declaration is refused", path)
    try:
        return (_xml_fromstring or ET.fromstring)(data)
    except ET.ParseError as err:
        raise UserError(f"not valid XML ({err})", path) from None
    except Exception as err:  # defusedxml's DTDForbidden / EntitiesForbidden
        raise UserError(f"XML refused ({type(err).__name__})", path) from None


def _number(node: ET.Element, key: str, path: Path) -> float:
    text = node.findtext(key)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise UserError(f"<{key}> is {text!r}, expected a number", path) from None


def read_voc_xml(path: Path) -> Annotation:
    """One PASCAL VOC annotation: ``size/width``, ``size/height``, ``object/{name,bndbox}``."""
    root = parse_xml(path.read_bytes(), path)
    size = root.find("size")
    if size is None:
        raise UserError("no <size> element", path)
    wnids, boxes = [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            raise UserError("an <object> without <bndbox>", path)
        wnids.append((obj.findtext("name") or "").strip())
        boxes.append([_number(box, k, path) for k in ("xmin", "ymin", "xmax", "ymax")])
    wh = (int(_number(size, "width", path)), int(_number(size, "height", path)))
    return Annotation(str(path), wh, tuple(wnids), np.asarray(boxes, np.float64).reshape(-1, 4))


class XmlBoxes:
    """Boxes from a folder of VOC XML files: ``<wnid>/<stem>.xml`` (or ``<stem>.xml`` directly)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, wnid: str, stem: str) -> Annotation | None:
        for path in (self.folder / wnid / f"{stem}.xml", self.folder / f"{stem}.xml"):
            if path.is_file():
                return read_voc_xml(path)
        return None


class LocBoxes:
    """Boxes from ``LOC_train_solution.csv`` (read once, keeping only the wanted classes)."""

    def __init__(self, path: Path, wnids: set[str] | None = None) -> None:
        self.path = path
        self.table: dict[str, Annotation] = {}
        reader = csv.reader(io.StringIO(read_text(path), newline=""))
        header = [h.strip() for h in next(reader, [])]
        if header[:2] != ["ImageId", "PredictionString"]:
            raise UserError(f"expected header 'ImageId,PredictionString', got {','.join(header)!r}", path)
        for line, row in enumerate(reader, start=2):
            if row and (wnids is None or row[0].split("_")[0] in wnids):
                self.table[row[0].strip()] = self._row(row, line)

    def _row(self, row: list[str], line: int) -> Annotation:
        tokens = row[1].split() if len(row) > 1 else []
        if len(tokens) % 5:
            raise UserError(f"line {line}: PredictionString has {len(tokens)} fields, not groups of 5", self.path)
        try:
            boxes = np.asarray([float(t) for i, t in enumerate(tokens) if i % 5], np.float64).reshape(-1, 4)
        except ValueError:
            raise UserError(f"line {line}: a box coordinate is not a number in {row[1]!r}", self.path) from None
        return Annotation(f"{self.path} line {line}", None, tuple(tokens[::5]), boxes)

    def get(self, wnid: str, stem: str) -> Annotation | None:
        return self.table.get(stem)


def open_boxes(path: Path, wnids: set[str] | None = None) -> XmlBoxes | LocBoxes:
    """A folder of XML files or a LOC csv, whichever ``path`` is."""
    if path.is_dir():
        return XmlBoxes(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return LocBoxes(path, wnids)
    raise UserError("--boxes must be a folder of VOC XML files or LOC_train_solution.csv", path)


def read_synsets(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` (``wnid words``) or ``words.txt`` (``wnid<TAB>words``) -> wnid -> words."""
    table = {}
    lines = read_text(path).splitlines()
    for number, line in enumerate(lines, start=1):
        parts = line.strip().split(None, 1)
        if not parts:
            continue
        if not WNID.fullmatch(parts[0]):
            raise UserError(f"line {number}: {parts[0]!r} is not a wnid", path)
        table[parts[0]] = parts[1] if len(parts) > 1 else ""
    return table


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def resolve_wnid(name: str, synsets: dict[str, str] | None, available: set[str], where: str | None = None) -> str:
    """A class's wnid: the name itself when it is one, else the one synset (among ``available``) whose
    words, or one of its comma-separated names, equal the class name (case and ``_`` ignored)."""
    if WNID.fullmatch(name):
        return name
    if synsets is None:
        raise UserError(f"class {name!r} is not a wnid: pass --synsets LOC_synset_mapping.txt (or words.txt)", where)
    key = _norm(name)
    hits = sorted(w for w, words in synsets.items() if w in available
                  and (_norm(words) == key or key in (_norm(p) for p in words.split(","))))
    if len(hits) != 1:
        found = "no synset" if not hits else f"several synsets ({', '.join(hits)})"
        raise UserError(f"class {name!r} names {found} of the ImageNet train folder", where)
    return hits[0]
