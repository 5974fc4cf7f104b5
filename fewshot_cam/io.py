"""Atomic file writes and JSON results (stage-free helper): the one home for both.

Every file fewshot-cam writes for a person or a later run (checkpoints, episode files, cache
entries, JSON results) goes through :func:`atomic_write`: the bytes go to a temporary file in the
same folder, are flushed and fsynced, then ``os.replace``d over the target, and the folder is fsynced
so the rename itself survives a crash. A crash leaves either the old file or the new one, never half
of one, and never a stray temporary file once the writer returns or raises.

An unwritable or full destination raises :class:`~fewshot_cam.errors.UserError` naming the path;
whatever was at ``path`` before is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .errors import UserError


def fsync_dir(folder: str | Path) -> None:
    """Persist a rename inside ``folder`` (best effort: not every OS can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _explain(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "not writable (permission denied or read-only file system)"
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        return "a file is in the way (a folder on this path is a file)"
    return err.strerror or str(err)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """``with atomic_open(path) as f: f.write(...)``: ``path`` appears whole when the block ends.

    The file gets permission bits ``mode`` (mkstemp's are owner-only). On any exception inside the
    block the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise UserError(f"cannot write here: {_explain(err)}", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write here: {_explain(err)}", path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def check_writable(path: str | Path, folder: bool = False) -> Path:
    """Fail early, before long work, when a file (``folder``: files inside a folder) cannot be written at
    ``path``: UserError naming it. Creates missing parent folders, as :func:`atomic_open` would; leaves
    nothing else behind."""
    path = Path(path)
    if not folder and path.is_dir():
        raise UserError("cannot write here: a folder is in the way (give a file name)", path)
    if folder and path.exists() and not path.is_dir():
        raise UserError("cannot write here: a file is in the way (give a folder)", path)
    try:
        (path if folder else path.parent).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=path if folder else path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise UserError(f"cannot write here: {_explain(err)}", path) from None
    return path


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], Any]) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a ``writer(f)`` callable) to ``path`` atomically."""
    with atomic_open(path) as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | Path, record: dict, fmt: str, *, indent: int | None = 1) -> Path:
    """Write a JSON result atomically; every result carries ``format`` (``fmt``) as its first key."""
    record = {"format": fmt, **{k: v for k, v in record.items() if k != "format"}}
    return atomic_write(path, json.dumps(record, indent=indent) + "\n")


def read_json(path: str | Path, fmt: str | None = None) -> dict:
    """Read a JSON result, checking its ``format`` key when ``fmt`` is given (a clean error otherwise)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read ({err.strerror or err})", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"not a JSON file ({err})", path) from None
    if not isinstance(record, dict):
        raise UserError(f"expected a JSON object, found {type(record).__name__}", path)
    if fmt is not None and record.get("format") != fmt:
        raise UserError(f"format {record.get('format')!r} is not {fmt!r}", path)
    return record
