"""The run folder of a training command: what it writes, in one place.

    <out>/config.yaml     resolved configuration
    <out>/metrics.jsonl   one JSON object per epoch
    <out>/train.log       the per-epoch log lines printed to stderr (appended; a resumed run adds to it)
    <out>/last.pt         checkpoint after the latest epoch (what --resume reads)
    <out>/best.pt         checkpoint with the best validation accuracy
    <out>/tb/             TensorBoard event files (when tensorboard is installed and enabled)

Only rank 0 writes; on other ranks every method is a no-op.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fewshot_cam.config import dump_yaml
from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write


def _summary_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(path))


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class RunDir:
    """Writer of one run folder. ``enabled=False`` (non-zero ranks) writes nothing."""

    def __init__(self, path: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tensorboard = tensorboard
        self._writer = None
        if enabled:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f"cannot create the run folder ({err.strerror})", self.path) from None

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
        old = read_metrics(self.metrics) if self.metrics.exists() else []
        kept = [line for line in old if line["epoch"] <= completed_epochs]
        atomic_write(self.metrics, "".join(json.dumps(line) + "\n" for line in kept))
        if self._tensorboard:
            self._writer = _summary_writer(self.path / "tb")

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Append one epoch's record to metrics.jsonl and its numbers to TensorBoard."""
        if not self.enabled:
            return
        record = {k: _json_value(v) for k, v in record.items()}
        with self.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, record["epoch"])
            self._writer.flush()

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    def log_line(self, line: str) -> None:
        """Append one line to train.log."""
        if self.enabled:
            with self.log.open("a") as f:
                f.write(line + "\n")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
