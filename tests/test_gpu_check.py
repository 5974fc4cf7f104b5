"""The GPU check's CPU dry run (scripts/gpu-check.sh --dry-run): every stage reports figures, a stage
that raises or hangs is recorded as failed / timed out while the later stages still run, and nothing
the check imports needs learn2learn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fewshot_cam.bench.runner import preload_modules
from fewshot_cam.bench.sizes import DRY, FULL
from fewshot_cam.bench.stages import STAGES, select
from fewshot_cam.errors import UserError

REPO = Path(__file__).parent.parent


def gpu_check(out: Path, *flags: str) -> tuple[int, dict, str]:
    """Run the wrapper script as a user would: (exit code, report.json, stdout + stderr)."""
    env = os.environ | {"PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(REPO / "scripts" / "gpu-check.sh"), "--dry-run", "--out", str(out),
                           "--work", str(out / "work"), *flags], env=env, capture_output=True, text=True, timeout=300)
    report = json.loads((out / "report.json").read_text())
    return proc.returncode, report, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    return gpu_check(tmp_path_factory.mktemp("gpu-check"))


def test_dry_run_reports_every_stage_ok(dry_run):
    code, report, output = dry_run
    assert code == 0, output
    assert report["format"] == "fewshot-cam-gpu-check/1" and report["dry_run"] is True
    assert list(report["stages"]) == STAGES.names()
    assert all(e["status"] == "ok" for e in report["stages"].values()), output
    assert report["environment"]["learn2learn_imported"] == "no"
    stages = report["stages"]
    assert stages["tests"]["result"]["passed"] >= 8 and stages["tests"]["result"]["failed"] == 0
    assert stages["throughput"]["result"]["eager_batch_8"]["ce_images_per_s"] > 0
    assert stages["throughput-compiled"]["result"]["compiled_batch_8"]["cam_over_ce"] > 0
    assert stages["eval"]["result"]["protonet"]["episodes"] == DRY.episodes
    assert set(stages["eval"]["result"]) >= {"logreg", "baseline", "baseline++"}
    assert {f"cam_{m}" for m in ("cam", "gradcam", "gradcam++", "scorecam")} <= set(stages["ablation"]["result"])
    assert stages["precision"]["result"]["episodes_differ"] == 0  # CPU: both fp32
    rehearsal = stages["rehearsal"]["result"]
    assert rehearsal["extrapolated"]["seconds"] > sum(rehearsal["pretrain"]["epoch_s"])
    markdown = (Path(report["work"]).parent / "report.md").read_text()
    assert all(f"## {name}: ok" in markdown for name in STAGES.names())
    headline = markdown.split("## headline")[1].split("\n## ")[0]
    assert "CAM / CE" in headline and "ProtoNet episodes with features" in headline and "RFS recipe" in headline
    assert stages["throughput"]["result"]["top_kernels_ce_batch_8"]  # the profiler's top operators


def test_a_failing_and_a_hanging_stage_do_not_stop_the_later_ones(tmp_path):
    code, report, output = gpu_check(tmp_path, "--stages", "throughput,eval,precision", "--time-box", "8",
                                     "--inject", "throughput=raise", "--inject", "eval=hang")
    assert code == 1
    stages = report["stages"]
    assert [stages[s]["status"] for s in ("throughput", "eval", "precision")] == ["failed", "timeout", "ok"], output
    assert "injected failure in stage throughput" in stages["throughput"]["error"]
    assert 7 < stages["eval"]["seconds"] < 20
    assert stages["precision"]["result"]["episodes"] == DRY.method_episodes


def test_stage_selection_by_letter_or_name():
    assert select("b") == ["throughput", "throughput-compiled"]
    assert select("f,a") == ["tests", "rehearsal"]
    assert select(None) == STAGES.names()
    with pytest.raises(UserError, match="unknown stage 'z'"):
        select("z")


def test_every_stage_has_a_time_box_and_the_full_boxes_fit_a_device_command():
    for sizes in (FULL, DRY):
        assert set(sizes.time_boxes) == set(STAGES.names())
    assert FULL.budget_s <= 570  # one device command runs at most 600 s


def test_nothing_the_check_runs_imports_learn2learn():
    """With learn2learn made unimportable, every module the stage processes preload still imports."""
    modules = preload_modules([stage.module for _, stage in STAGES.items()])
    code = "import importlib, sys; sys.modules['learn2learn'] = None\n" + "".join(
        f"importlib.import_module({m!r})\n" for m in modules)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "fewshot_cam.bench.stage_tests" in modules and "fewshot_cam.cli.pretrain" in modules


def test_parallel_draw_is_the_serial_draw_and_every_image_is_distinct():
    """The check draws big synthetic splits in spawned processes, one seed per chunk (the GPU path)."""
    import numpy as np

    from fewshot_cam.bench.data import draw_split

    serial = draw_split("test", (1, 1, 3), 20, 16, 10, workers=1)
    parallel = draw_split("test", (1, 1, 3), 20, 16, 10, workers=2)
    assert np.array_equal(serial.images, parallel.images) and np.array_equal(serial.masks, parallel.masks)
    assert serial.labels.tolist() == [c for c in range(3) for _ in range(20)]
    assert len(np.unique(serial.images.reshape(60, -1), axis=0)) == 60
