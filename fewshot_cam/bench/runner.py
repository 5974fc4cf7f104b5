"""Run one stage in its own subprocess under its time box, and turn how it ended into a report entry.

The child is ``python -m fewshot_cam.bench.gpu_check --run-stage NAME --result FILE ...``; it saves
its figures to FILE as it measures them (:class:`~fewshot_cam.bench.context.Context`), so a stage
killed at its time box still reports what it had. Its output is appended to ``log.txt``; a failure's
entry quotes the end of it. The child runs in its own process group, killed whole on a time-out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TAIL_LINES = 25


def _tail(log: Path, offset: int) -> str:
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return "\n".join(text.strip().splitlines()[-TAIL_LINES:])


def _read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run_stage(name: str, child_args: list[str], limit_s: float, work: Path, log: Path, env: dict[str, str]) -> dict:
    """Run stage ``name``; returns ``{status, seconds, limit_s, result[, error]}``."""
    result_path = work / f"stage-{name}.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "fewshot_cam.bench.gpu_check", "--run-stage", name, "--result", str(result_path),
           *child_args]
    with open(log, "ab") as f:
        f.write(f"\n===== stage {name} (time box {limit_s:.0f} s): {' '.join(cmd)}\n".encode())
        offset = f.tell()
        f.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the stage and anything it started (torchrun, workers)
            proc.wait()
            code = None
    entry = {"seconds": round(time.perf_counter() - start, 2), "limit_s": limit_s, "result": _read_result(result_path)}
    if code == 0:
        return {"status": "ok", **entry}
    if code is None:
        return {"status": "timeout", **entry, "error": f"killed at its {limit_s:.0f} s time box\n{_tail(log, offset)}"}
    return {"status": "failed", **entry, "error": f"exit code {code}\n{_tail(log, offset)}"}
