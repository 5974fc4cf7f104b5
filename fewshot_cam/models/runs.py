"""Finding training runs on disk: is a run folder finished, and which finished run is the latest.

A run folder (``fewshot-cam pretrain`` / ``metatrain``) holds ``config.yaml``, ``metrics.jsonl`` (one
record per completed epoch) and its checkpoints. It is *finished* when its metrics reach the
configured ``optim.epochs`` and its final checkpoint (:func:`final_checkpoint`: best.pt, or last.pt
with ``train.select: last``) exists. Bare ``fewshot-cam eval`` evaluates the latest finished run.
"""

from __future__ import annotations

import json
from pathlib import Path

from fewshot_cam.config import read_yaml
from fewshot_cam.errors import UserError
from fewshot_cam.models.checkpoint import final_checkpoint

RUN_GLOBS = ("*", "*/*")  # runs/NAME and runs/GROUP/NAME (e.g. runs/benchmark/ce, runs/ce/seed0)


def completed_epochs(run_folder: str | Path) -> int:
    """The last epoch metrics.jsonl records (0 without one)."""
    path = Path(run_folder) / "metrics.jsonl"
    if not path.is_file():
        return 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")  # a damaged file counts as no epoch
    except OSError:
        return 0
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return int(json.loads(lines[-1])["epoch"]) if lines else 0
    except (ValueError, KeyError, TypeError):
        return 0


def planned_epochs(run_folder: str | Path) -> int | None:
    """``optim.epochs`` of the folder's config.yaml (None without one)."""
    config = Path(run_folder) / "config.yaml"
    if not config.is_file():
        return None
    epochs = ((read_yaml(config) or {}).get("optim") or {}).get("epochs")
    return int(epochs) if isinstance(epochs, int) else None


def is_finished(run_folder: str | Path) -> bool:
    """True when the run completed all its epochs and its final checkpoint exists."""
    planned = planned_epochs(run_folder)
    if planned is None or completed_epochs(run_folder) < planned:
        return False
    try:
        return final_checkpoint(run_folder).is_file()
    except UserError:
        return False


def latest_finished_run(root: str | Path = "runs") -> Path | None:
    """The final checkpoint of the finished run under ``root`` (``root/*/``, ``root/*/*/``) whose
    checkpoint was written last; None when there is none."""
    found = []
    for pattern in RUN_GLOBS:
        for folder in Path(root).glob(pattern):
            if folder.is_dir() and is_finished(folder):
                checkpoint = final_checkpoint(folder)
                found.append((checkpoint.stat().st_mtime, str(checkpoint), checkpoint))
    return max(found)[2] if found else None
