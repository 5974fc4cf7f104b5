"""Bare ``pretrain`` (the quick-start CAM-loss recipe into runs/pretrain), bare ``eval`` (the latest
finished run under runs/), and the per-epoch log line that goes to stderr and train.log off a terminal."""

from __future__ import annotations

import os
import re
import time
from argparse import Namespace

import yaml

from fewshot_cam.models.runs import is_finished, latest_finished_run
from fewshot_cam.training.config import QUICKSTART

SMALL = ["--image-size", "16", "--backbone", "tiny", "--epochs", "2", "--device", "cpu", "--set", "optim.batch_size=16",
         "--set", "optim.steps_per_epoch=3", "--set", "val.episodes=10", "--set", "val.every=1"]


def test_bare_pretrain_resolves_to_the_quickstart_recipe_and_a_dataset_flag_does_not():
    from fewshot_cam.cli.pretrain import resolve_config

    blank = dict(config=None, overrides=[], dataset=None, root=None, image_size=None, backbone=None, head=None,
                 loss=None, teacher=None, distill=None, epochs=None, batch_size=None, lr=None, out=None,
                 device=None, seed=None)
    cfg = resolve_config(Namespace(**blank))
    assert (cfg.loss.loss, cfg.model.backbone, cfg.data.image_size, cfg.optim.epochs, cfg.run.out) == (
        "camloss", "conv4-2pool", 32, QUICKSTART["optim"]["epochs"], "runs/pretrain")
    other = resolve_config(Namespace(**(blank | {"dataset": "cub", "root": "x"})))
    assert (other.loss.loss, other.model.backbone, other.data.image_size) == ("ce", "conv4", 84)


def test_pretrain_then_bare_eval_in_a_fresh_folder(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("eval", "--ways", "5", "--shots", "1")
    assert code == 2 and "no finished run under runs/" in err
    code, out, err = cli("pretrain", *SMALL)
    assert code == 0 and "wrote runs/pretrain/best.pt" in out
    saved = yaml.safe_load((tmp_path / "runs/pretrain/config.yaml").read_text())
    assert saved["loss"]["loss"] == "camloss" and saved["model"]["backbone"] == "tiny"
    # one line per epoch on stderr (not a terminal here) and in train.log, with every field
    log = (tmp_path / "runs/pretrain/train.log").read_text().splitlines()
    assert len(log) == 2 and [line for line in err.splitlines() if line.startswith("epoch ")] == log
    pattern = (r"epoch 2/2 loss \S+ ce \S+ cam \S+ alpha 1 train_acc \S+ val \S+ \+- \S+ lr \S+ \d+ img/s "
               r"\(\S+ s; elapsed .+, ETA .+\)")
    assert re.fullmatch(pattern, log[1]), log[1]
    # a second bare pretrain refuses to mix runs and says the folder holds a finished one
    code, _, err = cli("pretrain", *SMALL)
    assert code == 2 and "finished run" in err and "--out" in err
    code, out, _ = cli("eval", "--ways", "5", "--shots", "1", "--methods", "protonet", "--episodes", "20")
    assert code == 0 and "evaluating runs/pretrain/best.pt" in out and "protonet" in out and "+-" in out


def _run(folder, epochs_done, planned, select="best-val"):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"optim": {"epochs": planned}, "train": {"select": select}}))
    (folder / "metrics.jsonl").write_text("".join(f'{{"epoch": {e}}}\n' for e in range(1, epochs_done + 1)))
    (folder / ("last.pt" if select == "last" else "best.pt")).write_bytes(b"x")
    return folder


def test_latest_finished_run_picks_the_newest_final_checkpoint_of_finished_runs(tmp_path):
    old = _run(tmp_path / "a", 3, 3)
    newer = _run(tmp_path / "group" / "seed0", 2, 2, select="last")
    unfinished = _run(tmp_path / "b", 1, 3)
    deep = _run(tmp_path / "x" / "y" / "z", 1, 1)  # deeper than runs/*/*/: not searched
    now = time.time()
    for i, path in enumerate([old / "best.pt", newer / "last.pt", unfinished / "best.pt", deep / "best.pt"]):
        os.utime(path, (now + i, now + i))
    assert not is_finished(unfinished) and is_finished(old)
    assert latest_finished_run(tmp_path) == newer / "last.pt"
    os.utime(old / "best.pt", (now + 10, now + 10))
    assert latest_finished_run(tmp_path) == old / "best.pt"
    assert latest_finished_run(tmp_path / "nothing") is None
