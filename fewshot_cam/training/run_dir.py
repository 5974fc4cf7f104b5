"""The run folder of a training command: what it writes, in one place.

    <out>/config.yaml     resolved configuration
    <out>/metrics.jsonl   one JSON object per epoch
    <out>/train.log       the per-epoch log lines printed to stderr (appended; a resumed run adds to it)
    <out>/last.pt         checkpoint after the latest epoch (what --resume reads)
    <out>/best.pt         checkpoint with the best validation accuracy
    <out>/tb/             TensorBoard event files (when tensorboard is installed and enabled)
    <out>/.lock           held while a run writes the folder (:mod:`.run_lock`)

Only rank 0 writes; on other ranks every method is a no-op. Opening a folder takes its lock first,
then removes the temporary files (``.*.tmp``) a killed writer left. metrics.jsonl is rewritten
atomically per epoch; reading it drops a half-written last line (with a warning).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from fewshot_cam.config import dump_yaml
from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write, check_writable
from fewshot_cam.training.run_lock import RunLock


def _summary_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(path))


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def remove_temporary_files(folder: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files of writers killed mid-write (:func:`fewshot_cam.io.atomic_open`'s)."""
    removed = []
    for tmp in folder.glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


class RunDir:
    """Writer of one run folder. ``enabled=False`` (non-zero ranks) writes nothing.

    The enabled writer holds the folder's lock from construction to :meth:`close` (also ``with RunDir(...)``).
    """

    def __init__(self, path: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tensorboard = tensorboard
        self._writer = None
        self._records: list[dict[str, Any]] = []
        self._lock = RunLock(self.path)
        if enabled:
            if self.path.exists() and not self.path.is_dir():
                raise UserError("the run folder is a file, not a folder", self.path)
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f"cannot create the run folder ({err.strerror})", self.path) from None
            self._lock.acquire()
            try:
                check_writable(self.path, folder=True)  # an existing .lock opens even in a read-only folder
            except UserError:
                self._lock.release()
                raise
            remove_temporary_files(self.path)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, cfg: Any) -> None:
        if self.enabled:
            dump_yaml(cfg, self.path / "config.yaml")

    def start(self, completed_epochs: int) -> None:
        """Keep only metrics of epochs <= ``completed_epochs`` (a fresh run: none; a resumed one: those in last.pt)."""
        if not self.enabled:
            return
        old = read_metrics(self.metrics, tolerate_partial=True) if self.metrics.exists() else []
        self._records = [line for line in old if line["epoch"] <= completed_epochs]
        self._write_metrics()
        if self._tensorboard:
            self._writer = _summary_writer(self.path / "tb")

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Append one epoch's record to metrics.jsonl and its numbers to TensorBoard."""
        if not self.enabled:
            return
        record = {k: _json_value(v) for k, v in record.items()}
        self._records = [r for r in self._records if r["epoch"] < record["epoch"]] + [record]
        self._write_metrics()
        if self._writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, record["epoch"])
            self._writer.flush()

    def _write_metrics(self) -> None:
        atomic_write(self.metrics, "".join(json.dumps(r) + "\n" for r in self._records))

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    def log_line(self, line: str) -> None:
        """Append one line to train.log."""
        if self.enabled:
            with self.log.open("a") as f:
                f.write(line + "\n")

    def close(self) -> None:
        """Close TensorBoard and release the lock (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._lock.release()


def read_metrics(path: str | Path, tolerate_partial: bool = False) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, each a JSON object with an integer ``epoch``.

    ``tolerate_partial``: a damaged last line (a writer killed mid-line) is dropped with a warning;
    a damaged line before it is always an error naming the file and the line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise UserError(f"cannot read ({err.strerror})", path) from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    records = []
    for k, (number, line) in enumerate(numbered):
        record = _metrics_record(line)
        if record is None and tolerate_partial and k == len(numbered) - 1:
            print(f"fewshot-cam: warning: {path}: dropped a half-written last line ({number})", file=sys.stderr)
        elif record is None:
            raise UserError(f"line {number} is not a metrics record (a JSON object with an integer epoch)", path)
        else:
            records.append(record)
    return records


def _metrics_record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(record, dict) and isinstance(record.get("epoch"), int) and not isinstance(record["epoch"], bool)
    return record if ok else None
