"""Run one stage in its own process under its time box, and turn how it ended into a report entry.

Stages are forked from a fork server that has already imported every stage module (and the CLI
commands they call), so a stage starts in milliseconds instead of re-importing torch and the
package; the server never touches CUDA, so each stage initialises the device afresh. A stage process
starts its own session (killed whole, with anything it started, at its time box), appends its output
to ``log.txt`` and saves its figures to its result file as it measures them
(:class:`~fewshot_cam.bench.context.Context`), so a stage killed at its time box still reports what
it had. A failure's entry quotes the end of its log.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

TAIL_LINES = 25
CLI_COMMANDS = ("pretrain", "eval", "cam", "ablate")


def preload_modules(stage_modules: list[str]) -> list[str]:
    """What the fork server imports first: every stage module and every CLI command a stage runs."""
    return ["fewshot_cam.bench.gpu_check", *stage_modules, *(f"fewshot_cam.cli.{c}" for c in CLI_COMMANDS)]


def learn2learn_loaded() -> None:
    """A stage-process target: exit 1 when learn2learn is among the server's imported modules."""
    sys.exit(int(sys.modules.get("learn2learn") is not None))


def _stage_entry(argv: list[str], log: str, env: dict[str, str]) -> None:
    """In the stage's process: own session, output to the log, then ``gpu_check.main(argv)``."""
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    from fewshot_cam.bench.gpu_check import main

    sys.exit(main(argv))


class StageProcesses:
    """The fork server and the stage processes forked from it."""

    def __init__(self, preload: list[str]) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(preload)

    def start(self, target, args: tuple = ()) -> multiprocessing.Process:
        process = self.context.Process(target=target, args=args, daemon=False)
        process.start()
        return process

    def wait(self, process: multiprocessing.Process, limit_s: float) -> int | None:
        """The exit code, or None after killing the process's whole session at ``limit_s``."""
        process.join(limit_s)
        if process.exitcode is not None:
            return process.exitcode
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the stage and anything it started (pytest, torchrun, workers)
        except ProcessLookupError:
            process.kill()
        process.join()
        return None


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


def run_stage(processes: StageProcesses, name: str, child_args: list[str], limit_s: float, work: Path, log: Path,
              env: dict[str, str]) -> dict:
    """Run stage ``name``; returns ``{status, seconds, limit_s, result[, error]}``."""
    result_path = work / f"stage-{name}.json"
    result_path.unlink(missing_ok=True)
    argv = ["--run-stage", name, "--result", str(result_path), *child_args]
    with open(log, "ab") as f:
        f.write(f"\n===== stage {name} (time box {limit_s:.0f} s): gpu_check {' '.join(argv)}\n".encode())
        offset = f.tell()
    start = time.perf_counter()
    code = processes.wait(processes.start(_stage_entry, (argv, str(log), env)), limit_s)
    entry = {"seconds": round(time.perf_counter() - start, 2), "limit_s": limit_s, "result": _read_result(result_path)}
    if code == 0:
        return {"status": "ok", **entry}
    if code is None:
        return {"status": "timeout", **entry, "error": f"killed at its {limit_s:.0f} s time box\n{_tail(log, offset)}"}
    return {"status": "failed", **entry, "error": f"exit code {code}\n{_tail(log, offset)}"}
