"""The dataset registry: ``load_split(dataset, root, split, image_size)`` for every supported format.

Everything is read from a local root; nothing is ever downloaded. Decoded splits are cached
(:mod:`fewshot_cam.data.cache`), so only the first load of a split decodes images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fewshot_cam.data import cache, imagefolder, mini_imagenet, tiered_imagenet
from fewshot_cam.data.decode import Source, check_root, check_split
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError


@dataclass(frozen=True)
class DatasetFormat:
    """How one dataset is found and read. Paths given here are absolute, existing roots."""

    detect_layout: Callable[[Path], str]
    """root -> layout name (UserError when the root holds none of the known layouts)."""
    locate: Callable[[Path, str], Source]
    """(root, split) -> the split's layout and source files, without decoding (UserError when missing)."""
    read: Callable[[Source, int], Split]
    """(source, image_size) -> the decoded Split in canonical order."""
    class_sizes: Callable[[Source], dict[str, int]]
    """source -> images per class, without decoding images."""
    needs_root: bool = True


def _synthetic():
    from fewshot_cam.data import synthetic  # engineer B's module, imported only when asked for

    return synthetic


def _synthetic_read(source: Source, image_size: int) -> Split:
    return _synthetic().load_synthetic(source.split, image_size, root=source.root, variant=source.dataset)


def _synthetic_format(variant: str) -> DatasetFormat:
    """The built-in benchmark, or one of its planted-truth variants (``synthetic.VARIANTS``)."""
    return DatasetFormat(
        detect_layout=lambda root: "synthetic",
        locate=lambda root, split: Source(variant, "synthetic", root, split, ()),
        read=_synthetic_read,
        class_sizes=lambda source: _sizes(_synthetic_read(source, 32)),
        needs_root=False,
    )


SYNTHETIC = _synthetic_format("synthetic")


def _sizes(split: Split) -> dict[str, int]:
    return dict(zip(split.class_names, split.class_sizes()))


DATASETS: dict[str, DatasetFormat] = {
    "mini-imagenet": DatasetFormat(mini_imagenet.detect_layout, mini_imagenet.locate, mini_imagenet.read, mini_imagenet.class_sizes),
    "tiered-imagenet": DatasetFormat(tiered_imagenet.detect_layout, tiered_imagenet.locate, tiered_imagenet.read, tiered_imagenet.class_sizes),
    "imagefolder": DatasetFormat(imagefolder.detect_layout, imagefolder.locate, imagefolder.read, imagefolder.class_sizes),
    "synthetic": SYNTHETIC,
    "synthetic-control-bg": _synthetic_format("synthetic-control-bg"),  # background learner's data
    "synthetic-control-fg": _synthetic_format("synthetic-control-fg"),  # foreground learner's data
}


def get_format(dataset: str) -> DatasetFormat:
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset '{dataset}' (valid: {', '.join(DATASETS)})")
    return DATASETS[dataset]


def _root(dataset: str, root: str | Path | None) -> Path | None:
    fmt = get_format(dataset)
    if not fmt.needs_root:
        return None if root is None else Path(root).expanduser().resolve()
    return check_root(root, dataset)


def detect_layout(dataset: str, root: str | Path | None) -> str:
    """The layout ``root`` holds for ``dataset`` (e.g. mini-imagenet: 'pickle' or 'csv')."""
    return get_format(dataset).detect_layout(_root(dataset, root))


def locate(dataset: str, root: str | Path | None, split: str) -> Source:
    """Where ``split`` of ``dataset`` lives under ``root``: layout and source files (nothing decoded)."""
    return get_format(dataset).locate(_root(dataset, root), check_split(split))


def load_split(dataset: str, root: str | Path | None, split: str, image_size: int = 84) -> Split:
    """Split ``split`` ("train", "val", "test") of ``dataset`` under ``root``, as uint8 at ``image_size``.

    Classes are sorted by name; images of a class keep their source order. Cached after the first load.
    """
    if image_size < 1:
        raise UserError(f"image size must be positive, got {image_size}")
    source = locate(dataset, root, split)
    fmt = get_format(dataset)
    return cache.cached(source, image_size, lambda: fmt.read(source, image_size))


def class_sizes(dataset: str, root: str | Path | None, split: str) -> dict[str, int]:
    """Images per class of ``split``, read without decoding images."""
    source = locate(dataset, root, split)
    return get_format(dataset).class_sizes(source)


def split_info(dataset: str, root: str | Path | None, split: str, image_size: int = 84) -> dict:
    """For ``data info``: layout, number of classes and images, and whether it is cached at ``image_size``
    (None for data that is never cached: the in-memory synthetic benchmark)."""
    source = locate(dataset, root, split)
    sizes = get_format(dataset).class_sizes(source)
    return {"layout": source.layout, "classes": len(sizes), "images": sum(sizes.values()),
            "cached": cache.is_cached(source, image_size) if source.files else None}
