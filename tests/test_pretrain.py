"""``fewshot-cam pretrain`` end to end on the tiny config, plus its configuration, schedule and validation."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from fewshot_cam.config import from_dict, load_config
from fewshot_cam.data.datasets import load_split
from fewshot_cam.errors import UserError
from fewshot_cam.models.checkpoint import load_checkpoint, load_model
from fewshot_cam.training import loop, objectives
from fewshot_cam.training.config import PretrainConfig
from fewshot_cam.training.optim import OptimConfig, build_scheduler
from fewshot_cam.training.run_dir import read_metrics
from fewshot_cam.training.validation import ValConfig, sample_episodes, validate

CONFIGS = Path(__file__).parent.parent / "configs"
TINY = CONFIGS / "synthetic-tiny-camloss.yaml"
SHIPPED = sorted({*CONFIGS.glob("*-ce.yaml"), *CONFIGS.glob("*-camloss.yaml")})
KEYS = {"epoch", "lr", "loss", "ce", "cam", "alpha", "train_acc", "val_acc", "val_ci95", "time"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two uninterrupted epochs of the tiny CAM-loss config."""
    from fewshot_cam.cli import main

    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["pretrain", "--config", str(TINY), "--out", str(out)]) == 0
    return out


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(PretrainConfig, path)
    assert cfg.optim.epochs >= 1 and cfg.loss.loss in path.name


def test_run_folder_metrics_and_best_checkpoint(tiny_run):
    assert {p.name for p in tiny_run.iterdir()} >= {"best.pt", "last.pt", "config.yaml", "metrics.jsonl"}
    records = read_metrics(tiny_run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2] and all(set(r) == KEYS for r in records)
    assert [r["alpha"] for r in records] == [0.0, 1.0]  # warm-up epoch, then alpha
    saved = from_dict(PretrainConfig, yaml.safe_load((tiny_run / "config.yaml").read_text()))
    assert saved == load_config(PretrainConfig, TINY, [f"run.out={tiny_run}"])
    # Oracle for the logged val_acc: re-validate best.pt from scratch.
    model, ckpt = load_model(tiny_run / "best.pt", backbone="tiny")
    best = max(records, key=lambda r: r["val_acc"])
    assert ckpt["epoch"] == best["epoch"] and ckpt["best_metric"] == pytest.approx(best["val_acc"])
    val = load_split("synthetic", None, "val", saved.data.image_size)
    again = validate(model, val, sample_episodes(val, saved.val), saved.val)
    assert again.mean == pytest.approx(best["val_acc"], abs=1e-4)


def test_resume_ends_where_an_uninterrupted_run_ends(tiny_run, tmp_path, interrupt_pretrain, cli):
    out = tmp_path / "run"
    interrupt_pretrain(2)
    assert cli("pretrain", "--config", TINY, "--out", out)[0] == 130
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    interrupt_pretrain(None)
    assert cli("pretrain", "--config", TINY, "--out", out)[0] == 2  # refuses to overwrite without --resume
    assert cli("pretrain", "--config", TINY, "--out", out, "--resume")[0] == 0
    a, b = weights(tiny_run / "last.pt"), weights(out / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop_time = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert drop_time(read_metrics(out / "metrics.jsonl")) == drop_time(read_metrics(tiny_run / "metrics.jsonl"))


def test_resume_with_another_backbone_is_a_clear_error(tiny_run, tmp_path, cli):
    out = tmp_path / "copy"
    out.mkdir()
    (out / "last.pt").write_bytes((tiny_run / "last.pt").read_bytes())
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, "--backbone", "conv4", "--resume")
    assert code == 2 and "model.backbone" in err and "'tiny'" in err and "'conv4'" in err
    code, _, err = cli("pretrain", "--config", TINY, "--out", tmp_path / "empty", "--resume")
    assert code == 2 and "last.pt" in err


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, cli):
    real = objectives.total_loss
    calls = {"n": 0}

    def poisoned(logits, features, weight, target, cfg, epoch):
        loss, parts = real(logits, features, weight, target, cfg, epoch)
        calls["n"] += 1
        return (loss * float("nan"), parts) if epoch == 1 and calls["n"] >= 6 else (loss, parts)

    monkeypatch.setattr(objectives, "total_loss", poisoned)
    out = tmp_path / "nan"
    code, _, err = cli("pretrain", "--config", TINY, "--out", out)
    assert code == 2 and "non-finite loss at epoch 2, step 2/4" in err
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1]


def test_flags_only_invocation(tmp_path, cli):
    out = tmp_path / "flags"
    code, stdout, _ = cli(
        "pretrain", "--dataset", "synthetic", "--image-size", "16", "--backbone", "tiny", "--epochs", "1",
        "--loss", "ce", "--device", "cpu", "--seed", "3", "--out", out,
        "--set", "optim.steps_per_epoch=2", "--set", "optim.batch_size=8", "--set", "val.episodes=10",
    )
    assert code == 0 and "best val" in stdout
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["backbone"] == "tiny" and saved["run"]["seed"] == 3 and saved["data"]["image_size"] == 16
    assert len(read_metrics(out / "metrics.jsonl")) == 1
    pytest.importorskip("tensorboard")
    assert list((out / "tb").glob("events.out.tfevents.*"))


def test_precedence_defaults_file_flags_set(tmp_path):
    from fewshot_cam.cli.pretrain import resolve_config

    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  epochs: 7\n  lr: 1.0e-3\nmodel:\n  backbone: tiny\n")
    args = Namespace(config=str(path), overrides=["optim.lr=0.2"], dataset=None, root=None, image_size=None,
                     backbone=None, head=None, loss=None, teacher=None, distill=None, epochs=3, batch_size=None,
                     lr=0.1, out=None, device=None, seed=None)
    cfg = resolve_config(args)
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.model.backbone, cfg.optim.momentum) == (3, 0.2, "tiny", 0.9)


@pytest.mark.parametrize(
    "setting, key", [("optim.lrr=1", "optim.lrr"), ("optim.lr=fast", "optim.lr"), ("run.amp=maybe", "run.amp")]
)
def test_bad_settings_exit_2_naming_the_key(setting, key, tmp_path, cli):
    code, _, err = cli("pretrain", "--config", TINY, "--out", tmp_path, "--set", setting)
    assert code == 2 and key in err and err.count("\n") == 1


def test_unknown_key_in_a_file_names_it(tmp_path, cli):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  epochz: 3\n")
    code, _, err = cli("pretrain", "--config", path, "--out", tmp_path / "o")
    assert code == 2 and "optim.epochz" in err and str(path) in err


@pytest.mark.parametrize("schedule", ["multistep", "cosine"])
def test_per_step_schedule_matches_torch_schedulers(schedule):
    cfg = OptimConfig(epochs=6, lr=0.1, schedule=schedule, milestones=(2, 4), gamma=0.5)
    spe = 3
    ours = build_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), cfg, spe)
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    if schedule == "multistep":  # oracle stepped once per epoch
        ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=[2, 4], gamma=0.5)
        per = spe
    else:  # oracle stepped once per step
        ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=cfg.epochs * spe)
        per = 1
    for step in range(cfg.epochs * spe):
        assert ours.get_last_lr()[0] == pytest.approx(ref.get_last_lr()[0], abs=1e-9), step
        ours.optimizer.step(), ours.step()
        if (step + 1) % per == 0:
            ref_opt.step(), ref.step()


def test_validation_accuracy_matches_a_plain_loop(monkeypatch):
    from fewshot_cam.training import validation

    g = torch.Generator().manual_seed(0)
    features = torch.randn(40, 8, generator=g)
    episodes = torch.randperm(40, generator=g)[:36].view(3, 4, 3)  # 3 episodes, 4-way, 1 shot + 2 queries
    monkeypatch.setattr(validation, "extract_features", lambda model, images, batch_size: features)
    interval = validate(None, SimpleNamespace(images=None), episodes, ValConfig(shots=1))
    expected = []
    for e in range(3):
        correct = 0
        for n in range(4):
            for q in episodes[e, n, 1:]:
                dists = [((features[q] - features[episodes[e, m, 0]]) ** 2).sum() for m in range(4)]
                correct += int(torch.stack(dists).argmin() == n)
        expected.append(100 * correct / 8)
    assert interval.mean == pytest.approx(np.mean(expected)) and interval.n == 3


def test_epoch_batches_are_a_seeded_permutation():
    a = loop.epoch_batches(10, 3, torch.Generator().manual_seed(1))
    assert a.shape == (3, 3) and len(set(a.flatten().tolist())) == 9
    assert torch.equal(a, loop.epoch_batches(10, 3, torch.Generator().manual_seed(1), max_steps=5))
    assert loop.epoch_batches(10, 3, torch.Generator().manual_seed(1), max_steps=2).shape == (2, 3)


def test_too_large_batch_is_a_user_error(tmp_path):
    from fewshot_cam.training.pretrain import fit

    cfg = load_config(PretrainConfig, TINY, [f"run.out={tmp_path}", "optim.batch_size=100000"])
    with pytest.raises(UserError, match="batch_size"):
        fit(cfg, torch.device("cpu"))
