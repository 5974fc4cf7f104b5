"""Progress bars for long loops (stage-free helper): one place that configures tqdm.

Bars go to stderr and are off when stderr is not a terminal (``disable=None``), so logs and test
output stay quiet; ``enabled=False`` turns them off outright (e.g. on non-zero distributed ranks).
"""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    enabled: bool = True,
    leave: bool = False,
    unit: str = "it",
) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total``); silent when not on a terminal."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=None if enabled else True,
        leave=leave,
        unit=unit,
        dynamic_ncols=True,
    )
