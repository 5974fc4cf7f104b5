"""Stage a, the gpu-marked tests: ``pytest -m gpu tests/test_gpu.py`` with the stage's device (the
tests read it from $FEWSHOT_CAM_GPU_TEST_DEVICE; "cpu" in the dry run), outcomes read from its JUnit
XML; where pytest or the tests folder is missing, the same checks through
:func:`fewshot_cam.bench.cuda_checks.run_builtin`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from fewshot_cam.bench.context import Context

TESTS = Path(__file__).resolve().parents[2] / "tests" / "test_gpu.py"
DEVICE_ENV = "FEWSHOT_CAM_GPU_TEST_DEVICE"


def outcomes(junit: Path) -> dict[str, str]:
    """{test id: "passed 1.2 s" | "failed ..." | "skipped ..."} from a JUnit XML report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        child = next(iter(case), None)
        state = "passed" if child is None or child.tag in ("system-out", "system-err") else child.tag
        reason = "" if child is None else (child.get("message") or "")[:200]
        out[case.get("name")] = f"{state} {float(case.get('time', 0)):.1f} s {reason}".strip()
    return out


def run_pytest(ctx: Context) -> None:
    junit, tmp = ctx.work / "junit-gpu.xml", ctx.work / "pytest-gpu"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-p", "no:xdist",
           f"--junitxml={junit}", f"--basetemp={tmp}", str(TESTS)]
    if ctx.sizes.test_filter:
        cmd += ["-k", ctx.put("filter", ctx.sizes.test_filter)]
    proc = subprocess.run(cmd, env=os.environ | {DEVICE_ENV: ctx.sizes.device}, cwd=TESTS.parents[1])
    found = ctx.put("tests", outcomes(junit)) if junit.exists() else {}
    for state in ("passed", "failed", "error", "skipped"):
        ctx.put(state, sum(v.startswith(state) for v in found.values()))
    if proc.returncode != 0:
        raise RuntimeError(f"pytest -m gpu exited {proc.returncode}")


def run(ctx: Context) -> None:
    ctx.put("device", ctx.sizes.device)
    if importlib.util.find_spec("pytest") is not None and TESTS.exists():
        ctx.put("runner", "pytest")
        run_pytest(ctx)
        return
    from fewshot_cam.bench.cuda_checks import run_builtin

    ctx.put("runner", "built-in (no pytest or no tests/ folder)")
    tmp = ctx.work / "builtin-gpu"
    shutil.rmtree(tmp, ignore_errors=True)
    found = ctx.put("tests", run_builtin(tmp, ctx.sizes.device))
    failed = ctx.put("failed", sum(not v.startswith("passed") for v in found.values()))
    ctx.put("passed", len(found) - failed)
    if failed:
        raise RuntimeError(f"{failed} of {len(found)} checks failed")
