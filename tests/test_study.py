"""``fewshot-cam study`` end to end at tiny size (built-in benchmark, tiny backbone, 1 epoch): every step's
output, one report beside the published numbers, and a second run that skips every finished step."""

from __future__ import annotations

import json

import pytest

from fewshot_cam.evaluation.published import published

TINY = ["--dataset", "synthetic", "--recipe", "camloss", "--backbone", "tiny", "--image-size", "16", "--epochs", "1",
        "--pretrain-set", "optim.batch_size=16", "--pretrain-set", "optim.steps_per_epoch=2",
        "--pretrain-set", "val.episodes=5", "--pretrain-set", "run.tensorboard=false", "--pretrain-set",
        "loss.warmup_epochs=0", "--shots", "1", "--episodes", "10", "--methods", "protonet,logreg",
        "--images", "8", "--device", "cpu"]

pytestmark = pytest.mark.slow


def test_study_runs_every_step_then_resumes_by_skipping_them(tmp_path, cli):
    out = tmp_path / "study"
    code, stdout, err = cli("study", *TINY, "--out", out)
    assert code == 0, err
    for name in ("ce/best.pt", "camloss/best.pt", "ce.pretrain.yaml", "eval-ce-1shot.json", "eval-camloss-1shot.json",
                 "report-1shot.json", "cams/settings.yaml", "cams/localization.json", "ablation-ce-test.json",
                 "ablation-camloss-test.json", "study.md", "study.json", "settings.yaml"):
        assert (out / name).is_file(), name
    record = json.loads((out / "study.json").read_text())
    assert record["format"] == "fewshot-cam-study/1" and record["ablation"] is True
    assert {(r["run"], r["method"]) for r in record["rows"]} == {(a, b) for a in ("ce", "camloss")
                                                                for b in ("protonet", "logreg")}
    assert all(r["published"] is None for r in record["rows"])  # no published numbers for the benchmark
    eval_ce = json.loads((out / "eval-ce-1shot.json").read_text())
    row = next(r for r in record["rows"] if (r["run"], r["method"]) == ("ce", "protonet"))
    assert row["mean"] == next(r["mean"] for r in eval_ce["results"] if r["method"] == "protonet")
    code, stdout, err = cli("study", *TINY, "--out", out)
    assert code == 0 and stdout.count("done, skipped") == 8, stdout  # 2 pretrain, 2 eval, report, cam, 2 ablate


def test_published_numbers_are_rfs_tables():
    assert published("rfs", "mini-imagenet", "resnet12", "logreg", 1) == (62.02, 0.63)
    assert published("rfs", "mini-imagenet", "resnet12", "logreg", 5) == (79.64, 0.44)
    assert published("rfs", "mini-imagenet", "conv4", "logreg", 1) is None
    assert published("camloss", "mini-imagenet", "resnet12", "logreg", 1) is None


def test_pretrain_settings_layer_recipe_flags_and_overrides():
    from argparse import Namespace

    from fewshot_cam.cli.study import pretrain_settings

    args = Namespace(dataset="cub", root="R", image_size=None, backbone="resnet12", epochs=None, device="cpu",
                     recipe="rfs", pretrain_set=["optim.lr=0.1"], overrides=["data.crop=box"],
                     config_data_options=None)
    got = pretrain_settings(args, "camloss")
    assert got["data"] == {"dataset": "cub", "root": "R", "image_size": 84, "crop": "box"}
    assert (got["optim"]["lr"], got["optim"]["epochs"], got["train"]["select"], got["loss"]["loss"]) == (
        0.1, 100, "last", "camloss")
