"""The lock on a run folder: one training run writes a folder at a time.

``OUT/.lock`` is held with ``fcntl.flock`` for the whole run and names its holder (pid, host, start
time, one ``key=value`` per line). A second run into the same folder finds the lock taken and stops
with a :class:`~fewshot_cam.errors.UserError` naming the holder. The kernel drops a flock when its
process dies (``kill -9`` included), so a lock left by a killed run is free and the next run takes it
over; the stale file's holder is then named in a warning. On a file system without flock (some network
mounts) the holder's pid is checked instead: a live process on this host keeps the folder.

The file is left in place (emptied) when the run ends: unlinking a flocked file lets two later runs
lock two different files.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from pathlib import Path

from fewshot_cam.errors import UserError

try:
    import fcntl
except ImportError:  # not on Windows: fall back to the pid check
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


def read_holder(path: Path) -> dict[str, str]:
    """The ``key=value`` lines of a lock file ({} when unreadable or empty)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def describe(holder: dict[str, str]) -> str:
    """e.g. "pid 4242 on host gpu1, started 2026-12-01 10:00:00"."""
    if not holder:
        return "an unknown process"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"


def _alive(holder: dict[str, str]) -> bool:
    """Whether the holder is a live process on this host (the check without flock)."""
    if holder.get("host") != socket.gethostname():
        return bool(holder)  # another host: cannot tell, assume it runs
    try:
        os.kill(int(holder.get("pid", "")), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``with RunLock(folder):`` holds ``folder/.lock``; :meth:`acquire` / :meth:`release` by hand."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise UserError naming the run that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UserError(f"cannot write the run folder ({err.strerror})", self.path.parent) from None
        previous = read_holder(self.path)
        if not self._flock(fd, previous):
            os.close(fd)
            raise UserError(f"another run is writing this folder: {describe(previous)} holds {LOCK_NAME}; "
                            "wait for it, stop it, or pick another --out", self.path.parent)
        if previous:
            print(f"fewshot-cam: warning: {self.path}: taking over the lock of a run that stopped "
                  f"({describe(previous)})", file=sys.stderr)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        text = f"pid={os.getpid()}\nhost={socket.gethostname()}\nstarted={stamp}\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
            os.fsync(fd)
        except OSError as err:
            os.close(fd)
            raise UserError(f"cannot write the run folder's lock ({err.strerror})", self.path) from None
        self._fd = fd

    def _flock(self, fd: int, previous: dict[str, str]) -> bool:
        """True when this process now holds the lock."""
        if fcntl is None:
            return not _alive(previous)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as err:
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                return not _alive(previous)
            raise
        return True

    def release(self) -> None:
        """Empty the lock file and let go of it (idempotent)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
