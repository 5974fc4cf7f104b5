"""End to end on a tiny CUB layout: cross-domain eval of a synthetic-trained checkpoint, ablate, cam, data show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cub_layout import write_tiny_cub
from PIL import Image

from fewshot_cam.analysis.cam_pictures import localization_summary, model_maps, sample_rows
from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.episodes import load_episode_file
from fewshot_cam.evaluation.run import EvalRequest, data_options, data_settings
from fewshot_cam.models.checkpoint import load_checkpoint, load_model

TINY = Path(__file__).parent.parent / "configs" / "synthetic-tiny-ce.yaml"
SETTING = ("--ways", "3", "--shots", "1", "--queries", "2")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny CUB layout, and a checkpoint pretrained on every class of the synthetic benchmark
    (train+val+test: Chen et al.'s cross-domain setting in miniature)."""
    from fewshot_cam.cli import main

    tmp = tmp_path_factory.mktemp("cubcli")
    write_tiny_cub(tmp / "cub")
    out = tmp / "run"
    argv = ["pretrain", "--config", str(TINY), "--out", str(out), "--epochs", "1", "--device", "cpu",
            "--set", "data.train_split=train+val+test", "--set", "val.every=0"]
    assert main(argv) == 0
    return tmp, out / "last.pt"


def test_checkpoint_pretrained_on_all_classes(setup):
    _, ckpt = setup
    sizes = [load_split("synthetic", None, s, 16).num_classes for s in ("train", "val", "test")]
    assert load_checkpoint(ckpt)["num_classes"] == sum(sizes)


def test_cross_domain_eval_on_cub_test(cli, setup, decoded_cache_dir):
    tmp, ckpt = setup
    episodes = tmp / "cub-test.json"
    code, out, err = cli("episodes", "make", "--dataset", "cub", "--root", tmp / "cub", "--split", "test",
                         *SETTING, "--n", "6", "--image-size", "16", "--out", episodes)
    assert code == 0, err
    code, out, err = cli(
        "eval",
        "--checkpoint",
        ckpt,
        "--dataset",
        "cub",
        "--root",
        tmp / "cub",
        "--split",
        "test",
        "--episode-file",
        episodes,
        "--methods",
        "protonet",
        "--device",
        "cpu",
        "--json",
        tmp / "e.json",
    )
    assert code == 0, err
    result = json.loads((tmp / "e.json").read_text())
    assert result["dataset"] == "cub" and result["split"] == "test" and result["n_episodes"] == 6
    assert result["fingerprint"] == load_split("cub", tmp / "cub", "test", 16).fingerprint()
    assert list(decoded_cache_dir.glob("cub-test-16-*"))  # the checkpoint's 16 px, not the 84 px default
    # the same episodes cannot be used on the checkpoint's own dataset: the fingerprint tells them apart
    code, _, err = cli("eval", "--checkpoint", ckpt, "--split", "test", "--episode-file", episodes, "--device", "cpu")
    assert code == 2 and "fingerprint" in err and "cub/test" in err


def test_read_options_follow_the_checkpoint_only_on_its_own_dataset():
    ckpt = {"config": {"data": {"dataset": "cub", "root": "/r", "image_size": 32, "crop": "box", "masks": "boxes"}}}
    own = EvalRequest(checkpoint="c.pt", data_options={"masks": "auto"})
    assert data_options(ckpt, own) == {"crop": "box", "masks": "auto"}
    other = EvalRequest(checkpoint="c.pt", dataset="filelist", root="/lists")
    assert data_options(ckpt, other) == {}
    assert data_settings(ckpt, other) == ("filelist", "/lists", 32)


def test_ablate_uses_cub_masks(cli, setup):
    tmp, ckpt = setup
    episodes = tmp / "cub-test-ablate.json"
    assert cli("episodes", "make", "--dataset", "cub", "--root", tmp / "cub", *SETTING, "--n", "4",
               "--image-size", "16", "--out", episodes)[0] == 0
    code, out, err = cli("ablate", "--checkpoint", ckpt, "--dataset", "cub", "--root", tmp / "cub",
                         "--episode-file", episodes, "--masks", "gt", "--device", "cpu", "--json", tmp / "a.json")
    assert code == 0, err
    record = json.loads((tmp / "a.json").read_text())
    split = load_split("cub", tmp / "cub", "test", 16)
    rows = np.unique(load_episode_file(episodes, split).indices.numpy())
    fraction = next(iter(record["models"].values()))["foreground_fraction"]
    assert fraction == pytest.approx(float(split.masks[rows].mean()), abs=0.02)  # episode rows (+ donor rows)
    assert 0.05 < fraction < 0.5  # the soft ellipses, not the whole image
    boxes = cli("ablate", "--checkpoint", ckpt, "--dataset", "cub", "--root", tmp / "cub", "--episode-file", episodes,
                "--set", "data.masks=boxes", "--device", "cpu", "--json", tmp / "b.json")
    assert boxes[0] == 0 and "masks from bounding boxes" in boxes[1], boxes[2]
    box_split = load_split("cub", tmp / "cub", "test", 16, {"masks": "boxes"})
    box_record = json.loads((tmp / "b.json").read_text())
    box_fraction = next(iter(box_record["models"].values()))["foreground_fraction"]
    assert box_fraction == pytest.approx(float(box_split.masks[rows].mean()), abs=0.02)
    assert box_fraction > fraction  # a box holds more than the ellipse inside it


@pytest.mark.parametrize("masks", ["segmentations", "boxes"])
def test_cam_localises_against_cub_masks_and_boxes(cli, setup, masks):
    tmp, ckpt = setup
    out = tmp / f"cam-{masks}"
    code, stdout, err = cli("cam", "--checkpoint", ckpt, "--dataset", "cub", "--root", tmp / "cub", "--n", "8",
                            "--pictures", "4", "--set", f"data.masks={masks}", "--target", "top1", "--out", out,
                            "--device", "cpu")
    assert code == 0, err
    truth = "masks from segmentations" if masks == "segmentations" else "masks from bounding boxes"
    assert truth in stdout
    record = json.loads((out / "localization.json").read_text())
    split = load_split("cub", tmp / "cub", "test", 16, {"masks": masks})
    rows = sample_rows(split, 8, 0)
    maps = model_maps({"last": load_model(ckpt)[0]}, split.images[rows], "cam")
    assert record["localization"]["last"] == pytest.approx(localization_summary(maps, split.masks[rows])["last"])
    assert truth in record["ground_truth"]


def test_data_show_draws_cub_mask_outlines(cli, setup):
    tmp, _ = setup
    png = tmp / "show.png"
    code, out, err = cli("data", "show", "--dataset", "cub", "--root", tmp / "cub", "--split", "val", "--out", png,
                         "--image-size", "32", "--n-classes", "2", "--per-class", "3")
    assert code == 0, err
    assert "mask outlines" in out and "segmentations" in out
    sheet = np.asarray(Image.open(png).convert("RGB"))
    assert (sheet == [255, 230, 0]).all(-1).sum() > 50


def test_data_info_and_bad_set(cli, setup):
    tmp, _ = setup
    code, out, err = cli("data", "info", "--dataset", "cub", "--root", tmp / "cub", "--set", "data.crop=box")
    assert code == 0, err
    assert "crop box" in out and [line.split()[:3] for line in out.splitlines()[2:]] == [
        ["train", "6", "24"], ["val", "3", "12"], ["test", "3", "12"]]
    code, _, err = cli("data", "info", "--dataset", "cub", "--root", tmp / "cub", "--set", "model.backbone=x")
    assert code == 2 and "--set takes only data read options" in err
    code, _, err = cli("data", "info", "--dataset", "cub", "--root", tmp / "cub", "--set", "data.crop=bbox")
    assert code == 2 and "data.crop" in err


def test_joined_split_episodes_and_eval(cli, setup):
    tmp, ckpt = setup
    path = tmp / "all.json"
    code, _, err = cli("episodes", "make", "--dataset", "synthetic", "--split", "train+val+test", *SETTING,
                       "--n", "3", "--image-size", "16", "--out", path)
    assert code == 0, err
    header = json.loads(path.read_text())
    joined = load_split("synthetic", None, "train+val+test", 16)
    assert header["split"] == "train+val+test" and header["fingerprint"] == joined.fingerprint()
    code, _, err = cli("eval", "--checkpoint", ckpt, "--split", "train+val+test", "--episode-file", path,
                       "--methods", "protonet", "--device", "cpu")
    assert code == 0, err
