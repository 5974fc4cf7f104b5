"""The GPU check: ``python -m fewshot_cam.bench [--dry-run] [--out DIR] [--stages a,b,...]``.

Runs the stages of :mod:`fewshot_cam.bench.stages` in order, each in its own subprocess with its own
time box (:mod:`.sizes`), rewriting ``DIR/report.json`` and ``DIR/report.md`` as each one ends; the
stages' output goes to ``DIR/log.txt``. Bulky files (drawn images, run folders, the decoded-split
cache) go to ``--work``, never to ``--out``, so ``--out`` stays a few small files. ``--dry-run`` runs
every stage at tiny size on the CPU. Exit code 0 when every stage ran ok, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from fewshot_cam.bench import environment
from fewshot_cam.bench.report import Report
from fewshot_cam.bench.runner import StageProcesses, learn2learn_loaded, preload_modules, run_stage
from fewshot_cam.bench.sizes import DRY, FULL, Sizes
from fewshot_cam.bench.stages import STAGES, select
from fewshot_cam.errors import UserError

REPO = Path(__file__).resolve().parents[2]
INJECTIONS = ("raise", "hang")
INJECT_ENV = "FEWSHOT_CAM_GPU_CHECK_INJECT"
"""Also read for ``--inject`` (``stage=raise,stage=hang``), so a test can reach a nested run."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="every stage at tiny size on the CPU (seconds)")
    p.add_argument("--out", type=Path, default=Path("runs/gpu-check"), help="report.json, report.md, log.txt")
    p.add_argument("--work", type=Path, default=None,
                   help="scratch folder for images, runs and cache (default: $TMPDIR/fewshot-cam-gpu-check[-dry])")
    p.add_argument(
        "--stages", default=None, help=f"comma-separated names or letters (default all): {STAGES.describe()}"
    )
    p.add_argument("--budget", type=float, default=None, help="seconds for all stages together (default: the sizes')")
    p.add_argument("--time-box", type=float, default=None, metavar="S", help="cap every stage's time box at S seconds")
    p.add_argument("--inject", action="append", default=[], metavar="STAGE=raise|hang",
                   help="make a stage fail or hang (to test the report); repeatable")
    p.add_argument("--run-stage", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def injections(args: argparse.Namespace) -> dict[str, str]:
    """``--inject`` and $FEWSHOT_CAM_GPU_CHECK_INJECT as {stage: raise|hang}."""
    items = [i for i in os.environ.get(INJECT_ENV, "").split(",") if i] + list(args.inject)
    out = {}
    for item in items:
        stage, _, how = item.partition("=")
        if stage not in STAGES or how not in INJECTIONS:
            raise UserError(
                f"--inject {item!r}: expected STAGE=raise|hang with STAGE one of {', '.join(STAGES.names())}"
            )
        out[stage] = how
    return out


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = DRY if args.dry_run else FULL
    return sizes if args.budget is None else replace(sizes, budget_s=args.budget)


def work_dir(args: argparse.Namespace) -> Path:
    if args.work is not None:
        return args.work.resolve()
    base = Path(os.environ.get("TMPDIR", "/tmp"))
    return base / ("fewshot-cam-gpu-check-dry" if args.dry_run else "fewshot-cam-gpu-check")


def child_env(work: Path) -> dict[str, str]:
    """The stages' environment: the working tree first on the path, the decoded-split cache in ``work``."""
    path = os.environ.get("PYTHONPATH", "")
    return os.environ | {"PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""), "PYTHONUNBUFFERED": "1",
                         "FEWSHOT_CAM_CACHE": str(work / "cache")}


def run_child(args: argparse.Namespace) -> int:
    """In a stage's subprocess: run that one stage (or the injected fault)."""
    name = args.run_stage
    how = injections(args).get(name)
    if how == "raise":
        raise RuntimeError(f"injected failure in stage {name}")
    if how == "hang":
        time.sleep(3600)
    from fewshot_cam.bench.context import Context  # torch and the package: only in the stage's process

    ctx = Context(sizes_for(args), work_dir(args), args.result)
    importlib.import_module(STAGES.get(name).module).run(ctx)
    return 0


def child_args(args: argparse.Namespace, work: Path) -> list[str]:
    flags = ["--work", str(work)] + (["--dry-run"] if args.dry_run else [])
    return flags + [f for i in args.inject for f in ("--inject", i)]


def describe_machine(processes: StageProcesses) -> dict:
    """The report's environment section, with whether the stages' imports loaded learn2learn."""
    info = environment.describe()
    for key in ("missing_required", "missing_optional"):
        if info[key]:
            print(f"gpu-check: {key.replace('_', ' ')}: {', '.join(info[key])}", file=sys.stderr)
    if not info["missing_required"]:
        code = processes.wait(processes.start(learn2learn_loaded), 300)
        info["learn2learn_imported"] = {0: "no", 1: "yes (a bug: the check must run without it)"}.get(
            code, f"the probe process failed (exit code {code})")
    return info


def run_all(args: argparse.Namespace) -> int:
    sizes, names, work = sizes_for(args), select(args.stages), work_dir(args)
    injections(args)  # bad --inject fails here, before anything runs
    work.mkdir(parents=True, exist_ok=True)
    env = child_env(work)
    processes = StageProcesses(preload_modules([stage.module for _, stage in STAGES.items()]))
    info = describe_machine(processes)
    if not args.dry_run and not info.get("device", {}).get("cuda_available", False):
        raise UserError("no CUDA device here (or a required package is missing, see above); use --dry-run on the CPU")
    command = "gpu-check " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = Report(args.out, {"dry_run": args.dry_run, "command": command, "environment": info,
                               "budget_s": sizes.budget_s, "work": str(work)})
    log = args.out / "log.txt"
    log.write_text(f"gpu-check log, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")  # appended to by each stage
    started, ok = time.perf_counter(), True
    for name in names:
        left = sizes.budget_s - (time.perf_counter() - started)
        limit = min(sizes.time_boxes[name], left, args.time_box or left)
        if limit < 5:
            entry = {"status": "skipped", "seconds": 0.0, "limit_s": 0.0, "result": {}, "error": "the budget is spent"}
        else:
            entry = run_stage(processes, name, child_args(args, work), limit, work, log, env)
        report.record(name, entry)
        ok &= entry["status"] == "ok"
        print(f"gpu-check: {name}: {entry['status']} in {entry['seconds']:.1f} s", flush=True)
    print(f"gpu-check: report in {args.out / 'report.md'} ({time.perf_counter() - started:.1f} s)")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return run_child(args) if args.run_stage else run_all(args)
    except UserError as err:
        print(f"gpu-check: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
