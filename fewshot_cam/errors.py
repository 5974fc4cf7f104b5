"""The one exception type for bad user input.

Library code raises :class:`UserError` at a boundary (a file, a setting, an episode request) with
the offending value and path in its message. The CLI prints it as one line and exits with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input: a missing or corrupt file, an impossible setting, a mismatched checkpoint.

    The message is one line that names the value and, where there is one, the path.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        message = " ".join(str(message).split())
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.path = None if path is None else Path(path)


def _bound(value: float) -> str:
    if value == 2**63 - 1:
        return "2**63 - 1"
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_range(key: str, value, low=None, high=None, *, low_open: bool = False, high_open: bool = False,
                path: str | Path | None = None):
    """``value`` if ``low <= value <= high`` (``<`` where open; None: unbounded) and finite, else
    UserError "``key`` must be >= low, got value" (or "in [low, high]"). Returns ``value``."""
    import math

    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return value
    if low is not None and high is not None:
        want = f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    elif low is not None:
        want = f"{'>' if low_open else '>='} {_bound(low)}"
    elif high is not None:
        want = f"{'<' if high_open else '<='} {_bound(high)}"
    else:
        want = "a finite number"
    raise UserError(f"{key} must be {want}, got {value!r}", path)


def check_rule(key: str, value, rule: tuple) -> None:
    """:func:`check_range` of ``value`` by ``rule`` = (low, high[, low_open[, high_open]])."""
    low, high, *opens = rule
    check_range(key, value, low, high, low_open=bool(opens and opens[0]), high_open=len(opens) > 1 and bool(opens[1]))


def check_ranges(section: str, obj, rules: dict[str, tuple]) -> None:
    """:func:`check_rule` for each ``field: rule`` of dataclass ``obj``, naming the key ``section.field``
    (``field`` alone when ``section`` is empty)."""
    for name, rule in rules.items():
        check_rule(f"{section}.{name}" if section else name, getattr(obj, name), rule)
