"""Faults during training runs: kills between checkpoint writes, twin runs, killed lock holders,
non-finite last steps, half-written metrics, read-only run folders (README "Errors", run guarantees)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fewshot_cam.models.checkpoint import load_checkpoint
from fewshot_cam.stats import Interval
from fewshot_cam.training import loop, objectives, run_checkpoints, state
from fewshot_cam.training.run_dir import read_metrics
from fewshot_cam.training.run_lock import RunLock

ROOT = Path(__file__).parent.parent
TINY = ROOT / "configs" / "synthetic-tiny-camloss.yaml"
NO_VAL = ("--set", "val.every=0")  # best.pt written every epoch: every kill point between the two writes exists


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def same_weights(a: Path, b: Path) -> bool:
    x, y = weights(a), weights(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def consistent(out: Path) -> tuple[int, int | None]:
    """Assert last.pt's summary describes best.pt; return (last epoch, best epoch)."""
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert last["best_epoch"] == best["epoch"] and last["best_metric"] == best["best_metric"]
    return last["epoch"], last["best_epoch"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted two-epoch tiny run without validation."""
    from fewshot_cam.cli import main

    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["pretrain", "--config", str(TINY), "--out", str(out), *NO_VAL]) == 0
    return out


def kill_at(monkeypatch, where: str, epoch: int) -> None:
    """Raise KeyboardInterrupt (a kill) at ``where``: "metrics" before the epoch's metrics line,
    "best" before best.pt, "last" after best.pt and before last.pt."""
    real_save, real_log = run_checkpoints.save_checkpoint, state.RunDir.log_epoch

    def save(path, payload):
        if payload["epoch"] == epoch and Path(path).name == f"{where}.pt":
            raise KeyboardInterrupt
        real_save(path, payload)

    def log(self, record):
        if where == "metrics" and record["epoch"] == epoch:
            raise KeyboardInterrupt
        real_log(self, record)

    monkeypatch.setattr(run_checkpoints, "save_checkpoint", save)
    monkeypatch.setattr(state.RunDir, "log_epoch", log)


@pytest.mark.parametrize("where", ["metrics", "best", "last"])
def test_kill_at_each_write_then_resume_is_consistent(where, straight, tmp_path, monkeypatch, cli):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        kill_at(m, where, 2)
        assert cli("pretrain", "--config", TINY, "--out", out, *NO_VAL)[0] == 130
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 1  # last.pt is always written last
    assert load_checkpoint(out / "best.pt")["epoch"] == (2 if where == "last" else 1)
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, "--resume", *NO_VAL)
    assert code == 0
    assert ("best.pt holds epoch 2" in err) == (where == "last")  # the repair says what it corrected
    assert consistent(out) == (2, 2)
    assert same_weights(out / "last.pt", straight / "last.pt") and same_weights(out / "best.pt", straight / "best.pt")
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]


def fake_validation(monkeypatch, means: list[float]) -> None:
    """Validation returns ``means`` in turn (each epoch validates once)."""
    values = iter(means)
    monkeypatch.setattr(state, "validate", lambda *a: Interval(next(values), 1.0, 20))


def test_summary_follows_best_pt_when_they_disagree(tmp_path, monkeypatch, cli):
    """best.pt older than last.pt claims (an old version wrote last.pt first and was killed): resume
    corrects last.pt's summary to what best.pt holds, and the run reports that accuracy."""
    out, side = tmp_path / "run", tmp_path / "epoch1.pt"
    real = run_checkpoints.save_checkpoint

    def keep_epoch1(path, payload):
        real(path, payload)
        if payload["epoch"] == 1 and Path(path).name == "best.pt":
            real(side, payload)

    with monkeypatch.context() as m:
        fake_validation(m, [50.0, 60.0])
        m.setattr(run_checkpoints, "save_checkpoint", keep_epoch1)
        assert cli("pretrain", "--config", TINY, "--out", out)[0] == 0
    assert consistent(out) == (2, 2)
    os.replace(side, out / "best.pt")  # best.pt back at epoch 1 (50%), last.pt says epoch 2 (60%)
    code, stdout, err = cli("pretrain", "--config", TINY, "--out", out, "--resume")
    assert code == 0 and "last.pt says best epoch 2 (60.0) but best.pt holds epoch 1 (50.0)" in err
    assert "accuracy 50.00%" in stdout
    assert consistent(out) == (2, 1)


def test_sigkill_between_best_and_last(straight, tmp_path, cli):
    """A real kill -9 after best.pt and before last.pt: the lock dies with the process, resume repairs."""
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from fewshot_cam.training import run_checkpoints
        real = run_checkpoints.save_checkpoint
        def save(path, payload):
            if payload["epoch"] == 2 and Path(path).name == "last.pt":
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, payload)
        run_checkpoints.save_checkpoint = save
        from fewshot_cam.cli import main
        main(["pretrain", "--config", {str(TINY)!r}, "--out", {str(out)!r}, "--set", "val.every=0"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(out / "best.pt")["epoch"] == 2 and load_checkpoint(out / "last.pt")["epoch"] == 1
    assert (out / ".lock").read_text().startswith("pid=")  # never released: the kernel dropped the flock
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, "--resume", *NO_VAL)
    assert code == 0 and "taking over the lock" in err
    assert consistent(out) == (2, 2) and same_weights(out / "last.pt", straight / "last.pt")


HOLD = """
import sys, time
from fewshot_cam.training.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A subprocess holding the lock of tmp_path/run: (its Popen, the folder)."""
    out = tmp_path / "run"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc, out
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_twin_run_is_refused_naming_the_holder_then_a_killed_holder_is_taken_over(holder, cli):
    proc, out = holder
    code, _, err = cli("pretrain", "--config", TINY, "--out", out)
    assert code == 2 and err.count("\n") == 1 and err.startswith("fewshot-cam: error:")
    assert f"pid {proc.pid}" in err and "started" in err and str(out) in err
    assert not (out / "metrics.jsonl").exists()  # the twin wrote nothing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, _, err = cli("pretrain", "--config", TINY, "--out", out)
    assert code == 0 and f"taking over the lock of a run that stopped (pid {proc.pid}" in err
    assert (out / ".lock").read_text() == ""  # released at the end


def test_stale_lock_file_and_leftover_temporary_files(tmp_path, cli):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("pid=999999999\nhost=elsewhere\nstarted=2026-11-30 09:00:00\n")
    (out / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, "--set", "optim.epochs=1")
    assert code == 0 and "pid 999999999 on host elsewhere" in err
    assert not list(out.glob(".*.tmp"))


def test_the_lock_is_released_after_a_failed_run(tmp_path, cli):
    out = tmp_path / "run"
    assert cli("pretrain", "--config", TINY, "--out", out, "--set", "optim.batch_size=100000")[0] == 2
    lock = RunLock(out)
    lock.acquire()  # would raise if the failed run still held it
    lock.release()


def test_non_finite_loss_on_the_last_step_leaves_last_pt_bit_identical(tmp_path, monkeypatch, cli):
    real, calls, after_epoch1 = objectives.total_loss, {"n": 0}, {}

    def poisoned(logits, features, weight, target, cfg, epoch):
        loss, parts = real(logits, features, weight, target, cfg, epoch)
        calls["n"] += 1
        return (loss * float("nan"), parts) if calls["n"] == 8 else (loss, parts)  # epoch 2, step 4 of 4

    record_epoch1(monkeypatch, after_epoch1)
    monkeypatch.setattr(objectives, "total_loss", poisoned)
    out = tmp_path / "run"
    code, _, err = cli("pretrain", "--config", TINY, "--out", out)
    assert code == 2 and "non-finite loss at epoch 2, step 4/4" in err and "(epoch 1)" in err
    assert {p.name: sha(p) for p in out.glob("*.pt")} == after_epoch1
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1]


def record_epoch1(monkeypatch, into: dict) -> None:
    """After epoch 1's checkpoints, store {name: sha256} of the run folder's .pt files in ``into``."""
    real = run_checkpoints.write_checkpoints

    def write(run_dir, payload, improved):
        real(run_dir, payload, improved)
        if payload["epoch"] == 1:
            into.update({p.name: sha(p) for p in Path(run_dir.path).glob("*.pt")})

    monkeypatch.setattr(run_checkpoints, "write_checkpoints", write)
    monkeypatch.setattr(state, "write_checkpoints", write)


def test_non_finite_weights_with_a_finite_loss_are_never_saved(tmp_path, monkeypatch, cli):
    real, calls, after_epoch1 = loop.train_step, {"n": 0}, {}

    def blown(forward, *args, **kwargs):
        out = real(forward, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 8:  # the last step of epoch 2: the update overflows, the loss was finite
            with torch.no_grad():
                next(forward.parameters())[0] = float("inf")
        return out

    record_epoch1(monkeypatch, after_epoch1)
    monkeypatch.setattr(loop, "train_step", blown)
    out = tmp_path / "run"
    code, _, err = cli("pretrain", "--config", TINY, "--out", out)
    assert code == 2 and err.count("fewshot-cam: error:") == 1 and "Traceback" not in err
    assert "non-finite values in model" in err and "after epoch 2" in err
    assert {p.name: sha(p) for p in out.glob("*.pt")} == after_epoch1


def test_non_finite_first_epoch_says_no_checkpoint(tmp_path, monkeypatch, cli):
    real = objectives.total_loss
    monkeypatch.setattr(objectives, "total_loss", lambda *a: (real(*a)[0] * float("nan"), real(*a)[1]))
    code, _, err = cli("pretrain", "--config", TINY, "--out", tmp_path / "run")
    assert code == 2 and "no checkpoint was written" in err


def test_half_written_metrics_line_is_dropped_on_resume(tmp_path, interrupt_pretrain, cli):
    out = tmp_path / "run"
    interrupt_pretrain(2)
    assert cli("pretrain", "--config", TINY, "--out", out)[0] == 130
    interrupt_pretrain(None)
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "loss": 1.2')  # a writer killed mid-line
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, "--resume")
    assert code == 0 and "dropped a half-written last line" in err
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]


def test_metrics_of_epochs_after_the_checkpoint_are_dropped_and_a_bad_middle_line_is_an_error(
        tmp_path, interrupt_pretrain, cli):
    out = tmp_path / "run"
    interrupt_pretrain(2)
    assert cli("pretrain", "--config", TINY, "--out", out)[0] == 130
    interrupt_pretrain(None)
    good = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text("not json\n" + good)
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, "--resume")
    assert code == 2 and "line 1 is not a metrics record" in err and "metrics.jsonl" in err
    (out / "metrics.jsonl").write_text(good + good.replace('"epoch": 1', '"epoch": 2'))  # epoch 2 logged, no last.pt
    assert cli("pretrain", "--config", TINY, "--out", out, "--resume")[0] == 0
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]


def test_read_only_folder_with_a_lock_file_is_refused_before_setup(tmp_path, monkeypatch, cli):
    """An existing .lock opens even where no file can be created: the folder itself is checked too."""
    import errno

    from fewshot_cam import io

    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("")
    real = io.tempfile.mkstemp

    def read_only(*args, **kwargs):
        if Path(kwargs.get("dir", "")) == out:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)

    monkeypatch.setattr(io.tempfile, "mkstemp", read_only)
    from fewshot_cam.training import pretrain

    monkeypatch.setattr(pretrain, "load_data", lambda *a: pytest.fail("setup ran"))
    code, _, err = cli("pretrain", "--config", TINY, "--out", out)
    assert code == 2 and err.count("\n") == 1 and "not writable" in err and str(out) in err


@pytest.fixture
def read_only_folder(tmp_path):
    """An existing folder this process cannot create files in (chmod; as root, a sysfs folder)."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys/kernel")
    try:
        os.close(os.open(folder / ".lock", os.O_RDWR | os.O_CREAT))
    except OSError:
        yield folder
        return
    pytest.skip("no read-only folder available to root here")


def test_read_only_run_folder_is_a_clean_error(read_only_folder, cli):
    code, _, err = cli("pretrain", "--config", TINY, "--out", read_only_folder)
    assert code == 2 and err.count("\n") == 1 and "cannot write the run folder" in err and str(read_only_folder) in err
    code, _, err = cli("pretrain", "--config", TINY, "--out", read_only_folder / "sub")
    assert code == 2 and err.count("\n") == 1 and "cannot create the run folder" in err


def test_orphan_best_of_a_first_epoch_kill_goes_with_a_fresh_run(tmp_path, monkeypatch, cli):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        kill_at(m, "last", 1)
        assert cli("pretrain", "--config", TINY, "--out", out, *NO_VAL)[0] == 130
    assert (out / "best.pt").exists() and not (out / "last.pt").exists()
    assert cli("pretrain", "--config", TINY, "--out", out, "--resume", *NO_VAL)[0] == 2  # nothing to resume
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, *NO_VAL)
    assert code == 0 and "left by a run killed before its first last.pt" in err
    assert consistent(out) == (2, 2)


def test_damaged_best_pt_is_written_again_from_last_pt(straight, tmp_path, cli):
    out = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "last.pt"):
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes((straight / name).read_bytes())
    (out / "best.pt").write_bytes(b"junk\n")  # last.pt says best.pt holds its own epoch 2 (validation off)
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, "--resume", *NO_VAL)
    assert code == 0 and "written again from last.pt" in err
    assert consistent(out) == (2, 2) and same_weights(out / "best.pt", straight / "best.pt")


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, cli):
    import errno

    from fewshot_cam.models import checkpoint

    real, after_epoch1 = checkpoint.torch.save, {}

    def full(obj, f, *args, **kwargs):
        if obj.get("epoch") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, f, *args, **kwargs)

    record_epoch1(monkeypatch, after_epoch1)
    monkeypatch.setattr(checkpoint.torch, "save", full)
    out = tmp_path / "run"
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, *NO_VAL)
    assert code == 2 and err.count("fewshot-cam: error:") == 1 and "no space left on the device" in err
    assert {p.name: sha(p) for p in out.glob("*.pt")} == after_epoch1 and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint.torch, "save", real)
    assert cli("pretrain", "--config", TINY, "--out", out, "--resume", *NO_VAL)[0] == 0  # and it resumes
    assert consistent(out) == (2, 2)


def test_full_disk_on_eval_json_keeps_the_old_result(straight, tmp_path, monkeypatch, cli):
    import errno

    from fewshot_cam import io

    result = tmp_path / "result.json"
    result.write_text('{"format": "an older result"}\n')

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    code, _, err = cli("eval", "--checkpoint", straight / "best.pt", "--episodes", "3", "--ways", "5", "--shots", "1",
                       "--methods", "protonet", "--json", result)
    assert code == 2 and err.count("\n") == 1 and "no space left on the device" in err and str(result) in err
    assert result.read_text() == '{"format": "an older result"}\n' and not list(tmp_path.glob(".*.tmp"))
