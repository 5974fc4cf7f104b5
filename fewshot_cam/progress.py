"""Progress for long loops (stage-free helper): one place that configures how progress is shown.

On a terminal a tqdm bar on stderr. When stderr is not a terminal (a cluster job's log file, a pipe)
plain lines instead, one about every 10 % of the work or every 30 s, whichever comes first, once the
loop has run ``QUIET_SECONDS`` (a short loop prints nothing)::

    extract: 512/2048 (25%) 3.1 s elapsed, ETA 9.3 s

``lines=False`` keeps such a loop silent off a terminal (training prints its own line per epoch);
``enabled=False`` turns progress off outright (e.g. on non-zero distributed ranks).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

LINE_FRACTION = 0.1  # a line per this fraction of the total ...
LINE_SECONDS = 30.0  # ... or per this many seconds, whichever comes first
QUIET_SECONDS = 5.0  # no line before the loop has run this long


def format_seconds(seconds: float) -> str:
    """3.14 -> "3.1 s", 125 -> "2 min 05 s", 7300 -> "2 h 01 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class LineProgress:
    """The tqdm subset the loops use (iterate, ``update``, ``set_postfix``, ``close``), printing lines.

    A line is printed when the count crosses the next ``LINE_FRACTION`` of ``total`` or ``LINE_SECONDS``
    have passed since the last line (none in the first ``QUIET_SECONDS``), and once at the end if any was
    printed; nothing for an unknown or zero total.
    """

    def __init__(self, iterable: Iterable[T] | None, total: int | None, desc: str | None, unit: str,
                 stream: Any = None, clock=time.monotonic) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc or "progress", unit
        self.stream, self.clock = stream, clock
        self.n, self.postfix = 0, ""
        self.start = self.last_time = clock()
        self.next_count = self._step()
        self.closed, self.printed = False, False

    def _step(self) -> float:
        return self.n + max(1.0, (self.total or 0) * LINE_FRACTION)

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable or ():
            yield item
            self.update()
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, values: dict[str, Any] | None = None, **kwargs: Any) -> None:
        items = {**(values or {}), **kwargs}
        self.postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        due = self.n >= self.next_count or now - self.last_time >= LINE_SECONDS
        if self.total and due and self.n < self.total and now - self.start >= QUIET_SECONDS:
            self._print(now)

    def close(self) -> None:
        if not self.closed and self.total and self.printed:
            self._print(self.clock())
        self.closed = True

    def line(self, now: float) -> str:
        elapsed = now - self.start
        text = f"{self.desc}: {self.n}/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%) " \
               f"{format_seconds(elapsed)} elapsed"
        if 0 < self.n < self.total:
            text += f", ETA {format_seconds(elapsed * (self.total - self.n) / self.n)}"
        return text + (f" {self.postfix}" if self.postfix else "")

    def _print(self, now: float) -> None:
        print(self.line(now), file=self.stream or sys.stderr, flush=True)
        self.last_time, self.next_count, self.printed = now, self._step(), True


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    enabled: bool = True,
    leave: bool = False,
    unit: str = "it",
    lines: bool = True,
) -> tqdm | LineProgress:
    """A tqdm bar over ``iterable`` (or a manual one with ``total``) on a terminal; progress lines off a
    terminal when ``lines`` (else silent); nothing at all when not ``enabled``."""
    if enabled and lines and not sys.stderr.isatty():
        return LineProgress(iterable, total, desc, unit)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=None if enabled else True,
        leave=leave,
        unit=unit,
        dynamic_ncols=True,
    )
