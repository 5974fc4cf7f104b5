"""The dataset registry: ``load_split(dataset, root, split, image_size)`` for every supported format.

Everything is read from a local root; nothing is ever downloaded. Decoded splits are cached
(:mod:`fewshot_cam.data.cache`), so only the first load of a split decodes images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fewshot_cam.data import cache, closerlook, cub, imagefolder, mini_imagenet, tiered_imagenet
from fewshot_cam.data.decode import Source, check_root, check_split
from fewshot_cam.data.options import ReadOptions, changed, read_options
from fewshot_cam.data.split import Split, concat_splits
from fewshot_cam.errors import UserError
from fewshot_cam.registry import Registry


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
    takes_options: bool = False
    """detect_layout and locate take the :class:`ReadOptions` as a last argument (others refuse options)."""


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


def _module_format(module, takes_options: bool = False) -> DatasetFormat:
    return DatasetFormat(module.detect_layout, module.locate, module.read, module.class_sizes,
                         takes_options=takes_options)


DATASETS: Registry[DatasetFormat] = Registry("dataset")
DATASETS.register("mini-imagenet", _module_format(mini_imagenet), help="miniImageNet (pickle or csv + images)")
DATASETS.register("tiered-imagenet", _module_format(tiered_imagenet), help="tieredImageNet (pickles)")
DATASETS.register("imagefolder", _module_format(imagefolder), help="ROOT/<split>/<class>/<image> folders")
DATASETS.register("synthetic", SYNTHETIC, help="the built-in benchmark (no files)")
DATASETS.register("cub", _module_format(cub, takes_options=True),
                  help="CUB-200-2011 as distributed (Chen et al.'s splits, segmentation or box masks)")
DATASETS.register("filelist", _module_format(closerlook, takes_options=True),
                  help="CloserLook JSON filelists (base.json / val.json / novel.json)")
DATASETS.register("synthetic-control-bg", _synthetic_format("synthetic-control-bg"),
                  help="planted-truth control: objects carry no class, backgrounds do (background learner)")
DATASETS.register("synthetic-control-fg", _synthetic_format("synthetic-control-fg"),
                  help="planted-truth control: no background shortcut anywhere (foreground learner)")
Options = ReadOptions | dict | None


def get_format(dataset: str) -> DatasetFormat:
    return DATASETS.get(dataset)


def _root(dataset: str, root: str | Path | None) -> Path | None:
    fmt = get_format(dataset)
    if not fmt.needs_root:
        return None if root is None else Path(root).expanduser().resolve()
    return check_root(root, dataset)


def _options(dataset: str, options: Options) -> tuple[ReadOptions, ...]:
    """() for a format without options (UserError if any is set), else (the ReadOptions,)."""
    opts = read_options(options)
    if get_format(dataset).takes_options:
        return (opts,)
    if changed(opts):
        takers = ", ".join(name for name, fmt in DATASETS.items() if fmt.takes_options)
        raise UserError(f"dataset '{dataset}' takes no data options (got {changed(opts)}; they apply to {takers})")
    return ()


def detect_layout(dataset: str, root: str | Path | None, options: Options = None) -> str:
    """The layout ``root`` holds for ``dataset`` (e.g. mini-imagenet: 'pickle' or 'csv')."""
    return get_format(dataset).detect_layout(_root(dataset, root), *_options(dataset, options))


def locate(dataset: str, root: str | Path | None, split: str, options: Options = None) -> Source:
    """Where ``split`` of ``dataset`` lives under ``root``: layout and source files (nothing decoded)."""
    return get_format(dataset).locate(_root(dataset, root), check_split(split), *_options(dataset, options))


def split_parts(split: str) -> list[str]:
    """``"train+val+test"`` -> its splits (one split name stands for itself); UserError on a repeat."""
    parts = [check_split(p.strip()) for p in split.split("+")] if "+" in split else [split]
    if len(set(parts)) != len(parts):
        raise UserError(f"split '{split}' names a split twice")
    return parts


def load_split(
    dataset: str, root: str | Path | None, split: str, image_size: int = 84, options: Options = None
) -> Split:
    """Split ``split`` ("train", "val", "test", or several joined by '+', e.g. "train+val+test") of
    ``dataset`` under ``root``, as uint8 at ``image_size``; ``options``: see :mod:`fewshot_cam.data.options`.

    Classes are sorted by name; images of a class keep their source order. Cached after the first load
    (each part of a joined split on its own).
    """
    if image_size < 1:
        raise UserError(f"image size must be positive, got {image_size}")
    parts = split_parts(split)
    if len(parts) > 1:
        return concat_splits([load_split(dataset, root, p, image_size, options) for p in parts], f"{dataset}/{split}")
    source = locate(dataset, root, split, options)
    fmt = get_format(dataset)
    return cache.cached(source, image_size, lambda: fmt.read(source, image_size))


def class_sizes(dataset: str, root: str | Path | None, split: str, options: Options = None) -> dict[str, int]:
    """Images per class of ``split`` (joined splits too), read without decoding images."""
    sizes: dict[str, int] = {}
    for part in split_parts(split):
        source = locate(dataset, root, part, options)
        sizes.update(get_format(dataset).class_sizes(source))
    return sizes


def split_info(
    dataset: str, root: str | Path | None, split: str, image_size: int = 84, options: Options = None
) -> dict:
    """For ``data info``: layout, number of classes and images, and whether it is cached at ``image_size``
    (None for data that is never cached: the in-memory synthetic benchmark)."""
    source = locate(dataset, root, split, options)
    sizes = get_format(dataset).class_sizes(source)
    return {"layout": source.layout, "classes": len(sizes), "images": sum(sizes.values()),
            "cached": cache.is_cached(source, image_size) if source.files else None}
