"""What a stage function gets: its sizes, device and work folder, and a result it saves as it goes."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fewshot_cam.bench._api import atomic_write
from fewshot_cam.bench.sizes import Sizes


@dataclass
class Context:
    """One stage's run. ``put`` records a figure and saves the result file at once, so a stage killed
    at its time box keeps what it had measured."""

    sizes: Sizes
    work: Path
    result_path: Path
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return torch.device(self.sizes.device)

    @property
    def dry_run(self) -> bool:
        return self.sizes.device == "cpu"

    def put(self, key: str, value: Any) -> Any:
        self.result[key] = value
        atomic_write(self.result_path, json.dumps(self.result, indent=1, default=str) + "\n")
        return value

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, fn, *args, **kwargs) -> tuple[Any, float]:
        """(fn's value, seconds), the device synchronised before and after."""
        self.sync()
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        self.sync()
        return value, time.perf_counter() - start

    def peak_mib(self) -> float | None:
        """torch.cuda.max_memory_allocated since the last reset, in MiB (None on the CPU)."""
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def workers(self) -> int:
        return max(1, min(self.sizes.workers, os.cpu_count() or 1))
