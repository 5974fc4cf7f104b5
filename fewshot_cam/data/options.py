"""Read options of the formats that take them (``cub``, ``filelist``): ``--set data.KEY=VALUE``.

Training commands hold them in their ``data`` config section (``DataConfig`` extends
:class:`ReadOptions`); ``eval``, ``ablate``, ``cam``, ``data`` and ``episodes make`` take
``--set data.KEY=VALUE`` for them alone. Formats without options refuse non-default values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from fewshot_cam.config import from_dict
from fewshot_cam.errors import UserError


@dataclass(frozen=True)
class ReadOptions:
    """How a dataset with per-image annotations is read."""

    crop: Literal["none", "box"] = "none"
    """cub: 'box' crops every image (and its mask) to its bounding box before resizing."""
    masks: Literal["auto", "segmentations", "boxes"] = "auto"
    """cub: foreground masks from the segmentation PNGs ('auto': where a PNG is present, else the box)
    or from the bounding boxes alone."""
    segmentations: str | None = None
    """cub: folder of ``<class folder>/<image>.png`` (default: ``segmentations/`` inside or beside
    ``CUB_200_2011/``)."""
    segmentation_threshold: float = 0.5
    """cub: a (resized) segmentation pixel is foreground when its grey value > this fraction of 255."""
    splits: str = "closerlook"
    """cub: 'closerlook' (Chen et al.'s class rule) or a folder holding ``base.json``/``val.json``/
    ``novel.json`` (CloserLook filelists) or ``train.csv``/``val.csv``/``test.csv`` (filename,label)."""
    images: str | None = None
    """filelist: folder that stored image paths are resolved against when they do not exist
    (default: --root)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.segmentation_threshold < 1.0:
            raise UserError(f"data.segmentation_threshold must be in [0, 1), got {self.segmentation_threshold}")


OPTION_KEYS = tuple(f.name for f in dataclasses.fields(ReadOptions))


def read_options(value: ReadOptions | Mapping[str, Any] | None) -> ReadOptions:
    """None, a mapping of option keys, or any object with the option fields (e.g. a DataConfig)."""
    if value is None:
        return ReadOptions()
    if isinstance(value, Mapping):
        return from_dict(ReadOptions, value, where="data")
    return ReadOptions(**{k: getattr(value, k) for k in OPTION_KEYS})


def changed(options: ReadOptions) -> dict[str, Any]:
    """The options that differ from their defaults."""
    default = ReadOptions()
    return {k: getattr(options, k) for k in OPTION_KEYS if getattr(options, k) != getattr(default, k)}
