"""Foreground masks for miniImageNet / tieredImageNet from ImageNet's human box annotations.

``build_box_masks`` maps every image of a split, in the order fewshot-cam loads it, to the ImageNet
train file it was cut from, and draws that file's boxes of the image's own class at the split's image
size (:mod:`fewshot_cam.data.box_masks`). The mapping is checked, never assumed
(:mod:`fewshot_cam.data.source_match`):

- Ravi & Larochelle csv names, ``n0153282900000005.jpg``: the 5th file of class n01532829 when its
  ImageNet files are sorted by the number after ``_`` (mini-imagenet-tools' rule);
- ImageNet file names (``n01532829_1234.*``, e.g. an imagefolder): by name;
- anything else (learn2learn's mini cache, tieredImageNet png-pkl / npz, other file names): by content,
  within the class; an ambiguous or distant match is left unmatched and counted.

Every name-based match is pixel-checked too. Class wnids are the class names, or looked up in the
synset list (``--synsets``) when the names are words.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewshot_cam.data import imagefolder, mini_imagenet
from fewshot_cam.data.box_masks import REFINES, rasterize_boxes
from fewshot_cam.data.datasets import load_split, locate
from fewshot_cam.data.decode import Source, canonical_order
from fewshot_cam.data.imagenet_boxes import IMAGENET_NAME, class_files, open_boxes, read_synsets, resolve_wnid
from fewshot_cam.data.source_match import array_thumbnails, check_named, class_thumbnails, distances, nearest
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError, check_ranges
from fewshot_cam.progress import progress

RAVI_NAME = re.compile(r"(n\d{8})(\d+)")
COVERAGE = ("images", "matched", "with boxes", "by name", "by content", "ambiguous", "distant")


@dataclass(frozen=True)
class ImageRef:
    """What the dataset says about one of its images: class wnid, and a name-based source if any."""

    wnid: str
    where: str  # the dataset file (or "file [image i]"), for messages
    stem: str | None = None  # an ImageNet file stem the dataset names
    ravi: int | None = None  # 1-based position in the class's numerically sorted files


@dataclass
class BoxMasks:
    """The result for one split: masks (N, S, S) bool, has_mask (N,), source (N,) and the coverage counts."""

    masks: np.ndarray
    has_mask: np.ndarray
    source: list[str]
    coverage: dict[str, int] = field(default_factory=dict)


def named_paths(source: Source) -> list[Path] | None:
    """The split's image files in canonical order, for layouts that have files (csv, imagefolder)."""
    if source.dataset == mini_imagenet.NAME and source.layout == "csv":
        rows = mini_imagenet.read_csv(source.root, source.split)
        paths, names = [p for p, _ in rows], [label for _, label in rows]
    elif source.dataset == imagefolder.NAME:
        paths = imagefolder.list_images(source.root, source.split)
        names = [p.parent.name for p in paths]
    else:
        return None
    return [paths[i] for i in canonical_order(names)[1]]


def image_ref(path: Path, wnid: str) -> ImageRef:
    """An image file's name -> its ImageNet source by name, by Ravi's rule, or none (match by content)."""
    for pattern, key in ((IMAGENET_NAME, "stem"), (RAVI_NAME, "ravi")):
        match = pattern.fullmatch(path.stem)
        if match is None:
            continue
        if match.group(1) != wnid:
            raise UserError(f"file names class {match.group(1)} but is in class {wnid}", path)
        return ImageRef(wnid, str(path), **{key: path.stem if key == "stem" else int(match.group(2))})
    return ImageRef(wnid, str(path))


def split_refs(source: Source, split: Split, wnids: list[str]) -> list[ImageRef]:
    """One :class:`ImageRef` per image of ``split`` (canonical order); ``wnids[c]`` is class c's wnid."""
    paths = named_paths(source)
    if paths is None:
        return [ImageRef(wnids[c], f"{split.name} [image {i}]") for i, c in enumerate(split.labels)]
    if len(paths) != len(split.images):
        raise UserError(f"{len(paths)} files but {len(split.images)} images loaded: clear the cache", source.root)
    return [image_ref(p, wnids[c]) for p, c in zip(paths, split.labels)]


def class_wnids(split: Split, train_dir: Path, synsets: Path | None) -> list[str]:
    """The wnid of every class of ``split`` (names that are wnids, else looked up in the synset list)."""
    table = read_synsets(synsets) if synsets is not None else None
    available = {p.name for p in train_dir.iterdir() if p.is_dir()} if table is not None else set()
    return [resolve_wnid(name, table, available, split.name) for name in split.class_names]


def resolve_named(refs: list[ImageRef], files: list[Path]) -> list[Path | None]:
    """Each name-based ref's ImageNet file (None for content refs); a missing one is an error."""
    by_stem = {p.stem: p for p in files}
    out = []
    for ref in refs:
        if ref.stem is not None:
            if ref.stem not in by_stem:
                raise UserError(f"no ImageNet train file {ref.stem}.* for this image", ref.where)
            out.append(by_stem[ref.stem])
        elif ref.ravi is not None:
            if not 1 <= ref.ravi <= len(files):
                raise UserError(
                    f"Ravi index {ref.ravi} but class {ref.wnid} has {len(files)} ImageNet files", ref.where
                )
            out.append(files[ref.ravi - 1])
        else:
            out.append(None)
    return out


@dataclass(frozen=True)
class BoxRequest:
    """One ``data boxes`` run (see the CLI help for each field)."""

    dataset: str
    root: str | Path
    split: str
    imagenet_train: Path
    boxes: Path
    parts: Path  # folder for per-class partial results (resume)
    image_size: int = 84
    synsets: Path | None = None
    refine: str = "box"
    workers: int = 1

    def __post_init__(self) -> None:
        check_ranges("", self, {"image_size": (8, 4096), "workers": (1, 256)})


def build_box_masks(request: BoxRequest, show_progress: bool = True) -> tuple[Split, BoxMasks]:
    """The split and its box masks; removes the parts folder once every class is done."""
    refine = REFINES.get(request.refine)
    if not request.imagenet_train.is_dir():
        raise UserError("ImageNet train folder not found", request.imagenet_train)
    split = load_split(request.dataset, request.root, request.split, request.image_size)
    wnids = class_wnids(split, request.imagenet_train, request.synsets)
    refs = split_refs(locate(request.dataset, request.root, request.split), split, wnids)
    boxes = open_boxes(request.boxes, set(wnids))
    result = BoxMasks(np.zeros(split.images.shape[:3], bool), np.zeros(len(refs), bool), [""] * len(refs),
                      dict.fromkeys(COVERAGE, 0))
    result.coverage["images"] = len(refs)
    jobs, named = {}, {}
    for c, wnid in enumerate(wnids):
        files = class_files(request.imagenet_train, wnid)
        rows = np.flatnonzero(split.labels == c)
        named[wnid] = (rows, resolve_named([refs[i] for i in rows], files))
        content = any(p is None for p in named[wnid][1])
        wanted = set(named[wnid][1])
        jobs[wnid] = files if content else [p for p in files if p in wanted]
    bar = progress(total=len(jobs), desc=f"boxes {split.name}", unit="class", enabled=show_progress)
    with bar:
        for wnid, thumbs, sizes in class_thumbnails(jobs, request.parts, request.workers):
            rows, sources = named[wnid]
            match_class(split, refs, rows, sources, jobs[wnid], thumbs, sizes, boxes, refine, result)
            bar.update(1)
    shutil.rmtree(request.parts, ignore_errors=True)
    return split, result


def match_class(split: Split, refs: list[ImageRef], rows: np.ndarray, sources: list[Path | None], files: list[Path],
                thumbs: np.ndarray, sizes: np.ndarray, boxes, refine, result: BoxMasks) -> None:
    """Match one class's images to its decoded ImageNet files and draw their boxes into ``result``."""
    index = {p: j for j, p in enumerate(files)}
    ours = array_thumbnails(split.images[rows])
    by_name = np.asarray([p is not None for p in sources], bool)
    picked = np.asarray([index[p] if p is not None else -1 for p in sources], np.int64)
    if by_name.any():
        check_named(ours[by_name], thumbs[picked[by_name]], [refs[i].where for i in rows[by_name]],
                    [str(p) for p in sources if p is not None])
    if (~by_name).any():
        found, reason = nearest(distances(ours[~by_name], thumbs))
        picked[~by_name] = found
        for key in ("ambiguous", "distant"):
            result.coverage[key] += int((reason == key).sum())
    result.coverage["by name"] += int(by_name.sum())
    result.coverage["by content"] += int(((~by_name) & (picked >= 0)).sum())
    for i, j in zip(rows, picked):
        if j < 0:
            continue
        result.coverage["matched"] += 1
        result.source[i] = files[j].name
        mask = image_mask(boxes, refs[i].wnid, files[j], tuple(int(s) for s in sizes[j]), split.image_size)
        if mask is not None:
            result.masks[i] = refine(split.images[i], mask)
            result.has_mask[i] = True
            result.coverage["with boxes"] += 1


def image_mask(boxes, wnid: str, file: Path, size: tuple[int, int], out: int) -> np.ndarray | None:
    """(out, out) bool union of the file's boxes of class ``wnid``, or None when it has none."""
    annotation = boxes.get(wnid, file.stem)
    if annotation is None:
        return None
    if annotation.size is not None and annotation.size != size:
        raise UserError(f"annotation says {annotation.size[0]} x {annotation.size[1]} pixels, but the JPEG "
                        f"{file} is {size[0]} x {size[1]}", annotation.path)
    own = annotation.own(wnid)
    return rasterize_boxes(own, size, out) if len(own) else None


def coverage_table(coverage: dict[str, dict[str, int]]) -> list[list[str]]:
    """Rows for a markdown table: one per split (name -> counts), and a total when there are several."""
    if len(coverage) > 1:
        coverage = {**coverage, "total": {k: sum(c[k] for c in coverage.values()) for k in COVERAGE}}
    rows = []
    for name, c in coverage.items():
        n = max(c["images"], 1)
        rows.append([name, str(c["images"]), f"{c['matched']} ({100 * c['matched'] / n:.1f}%)",
                     f"{c['with boxes']} ({100 * c['with boxes'] / n:.1f}%)",
                     *(str(c[k]) for k in ("by name", "by content", "ambiguous", "distant"))])
    return rows
