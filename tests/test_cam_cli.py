"""End to end: ``fewshot-cam cam`` and ``fewshot-cam ablate`` on a tiny imagefolder with masks."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot_cam.analysis.cam_pictures import localization_summary, model_maps, sample_rows
from fewshot_cam.data.datasets import load_split
from fewshot_cam.models.checkpoint import load_model, save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model

SIZE, CLASSES, PER_CLASS = 16, 4, 5


def write_imagefolder(root, with_masks: bool) -> None:
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        for i in range(PER_CLASS):
            mask = np.zeros((SIZE, SIZE), bool)
            y, x = rng.integers(0, SIZE // 2, 2)
            mask[y : y + SIZE // 2, x : x + SIZE // 2] = True
            image = np.where(mask[..., None], fg, bg) + rng.integers(-20, 20, (SIZE, SIZE, 3))
            folder = root / "test" / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
            if with_masks:
                (root / "masks" / "test" / f"class{c}").mkdir(parents=True, exist_ok=True)
                mask_png = root / "masks" / "test" / f"class{c}" / f"{i:02d}.png"
                Image.fromarray(mask.astype(np.uint8) * 255).save(mask_png)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("camcli")
    write_imagefolder(tmp / "data", with_masks=True)
    write_imagefolder(tmp / "nomasks", with_masks=False)
    cfg = ModelConfig(backbone="tiny")
    for seed, name in ((0, "ce.pt"), (1, "camloss.pt")):
        torch.manual_seed(seed)
        model = build_model(cfg, num_classes=6)
        save_checkpoint(tmp / name, {"model": model.state_dict(), "model_config": asdict(cfg), "num_classes": 6,
                                     "config": {"data": {"dataset": "imagefolder", "root": str(tmp / "data"),
                                                         "image_size": SIZE}}})
    return tmp


def test_cam_draws_two_checkpoints_and_scores_localisation(cli, setup):
    out = setup / "pictures"
    code, stdout, err = cli("cam", "--checkpoint", setup / "ce.pt", "--checkpoint", setup / "camloss.pt",
                            "--method", "gradcam", "--n", "12", "--pictures", "9", "--out", out, "--device", "cpu",
                            "--target", "top1")
    assert code == 0, err
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2 and all(Image.open(p).size[0] > 200 for p in pngs)  # 9 rows: 8 + 1
    record = json.loads((out / "localization.json").read_text())
    # oracle: the same maps and metric through the library
    split = load_split("imagefolder", setup / "data", "test", SIZE)
    rows = sample_rows(split, 12, 0)
    models = {n: load_model(setup / f"{n}.pt")[0] for n in ("ce", "camloss")}
    expected = localization_summary(model_maps(models, split.images[rows], "gradcam"), split.masks[rows])
    assert record["localization"].keys() == expected.keys()
    for label, scores in expected.items():
        assert record["localization"][label] == pytest.approx(scores)


def ablate(cli, setup, *extra):
    return cli("ablate", "--checkpoint", setup / "ce.pt", "--ways", "3", "--shots", "1", "--queries", "2",
               "--episodes", "4", "--seed", "3", "--device", "cpu", *extra)


def test_ablate_two_checkpoints_write_json_and_plot_and_original_equals_eval(cli, setup):
    out = setup / "ablate.json"
    code, stdout, err = ablate(cli, setup, "--checkpoint", f"cam={setup / 'camloss.pt'}", "--masks", "gt",
                               "--methods", "protonet,logreg", "--json", out, "--plot", setup / "bars.png")
    assert code == 0, err
    assert "warning" not in err and "BRI" in stdout and "BG-gap" in stdout and "background-following" in stdout
    record = json.loads(out.read_text())
    assert record["format"] == "fewshot-cam-ablation/2" and record["fill"] == "dataset-mean"
    assert record["masks"] == "gt" and record["n_episodes"] == 4 and record["modify"] == "queries"
    assert list(record["models"]) == [str(setup / "ce.pt"), "cam"]
    names = ["original", "foreground", "background", "bg-tiled", "mixed-same", "mixed-rand"]
    assert record["condition_names"] == names
    assert np.array(record["swaps"]["mixed-rand"]).shape == (4, 3, 3)  # (E, N, K+Q) split rows
    assert Image.open(setup / "bars.png").size[0] > 100
    for label, name in ((str(setup / "ce.pt"), "ce"), ("cam", "camloss")):
        model = record["models"][label]
        assert list(model["conditions"]) == names and set(model) >= {"bg_gap", "background_following", "reliance"}
        code, _, err = cli("eval", "--checkpoint", setup / f"{name}.pt", "--ways", "3", "--shots", "1", "--queries",
                           "2", "--episodes", "4", "--seed", "3", "--device", "cpu", "--methods", "protonet,logreg",
                           "--json", setup / "eval.json")
        assert code == 0, err
        plain = json.loads((setup / "eval.json").read_text())
        for got, want in zip(model["conditions"]["original"], plain["results"]):
            assert got["method"] == want["method"]
            assert got["per_episode"] == pytest.approx(want["per_episode"], abs=1e-6)


def test_ablate_conditions_subset_and_old_fill_name(cli, setup, capsys):
    code, stdout, err = ablate(cli, setup, "--conditions", "foreground,mixed-rand", "--fill", "image-mean",
                               "--modify", "all", "--mask-dilate", "1", "--json", setup / "sub.json")
    assert code == 0, err
    record = json.loads((setup / "sub.json").read_text())
    model = next(iter(record["models"].values()))
    assert list(model["conditions"]) == ["original", "foreground", "mixed-rand"]
    assert "bg_gap" not in model and "reliance" not in model and "background_following" in model
    with pytest.raises(SystemExit) as exc:  # the per-image mean is now 'image-mean': argparse lists the names
        ablate(cli, setup, "--fill", "mean")
    assert exc.value.code == 2 and "image-mean" in capsys.readouterr().err


def test_ablate_with_own_cam_masks_warns(cli, setup):
    code, _, err = ablate(cli, setup, "--masks", "gradcam", "--conditions", "background")
    assert code == 0 and "own" in err and "warning" in err
    code, _, err = ablate(cli, setup, "--masks", "scorecam", "--mask-model", setup / "camloss.pt",
                          "--cam-batch-size", "8", "--conditions", "foreground")
    assert code == 0 and "warning" not in err


def test_ablate_gt_masks_without_masks_is_a_user_error(cli, setup):
    code, _, err = ablate(cli, setup, "--masks", "gt", "--dataset", "imagefolder", "--root", setup / "nomasks")
    assert code == 2 and "needs ground-truth masks" in err and len(err.strip().splitlines()) == 1


def test_bad_masks_are_errors_naming_the_file_or_skipped_and_counted(cli, setup, tmp_path):
    data = tmp_path / "bad"
    shutil.copytree(setup / "data", data)
    empty = data / "masks" / "test" / "class1" / "03.png"
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(empty)
    flags = ("--dataset", "imagefolder", "--root", data, "--conditions", "foreground", "--episodes", "30")
    code, _, err = ablate(cli, setup, *flags)
    assert code == 2 and str(empty) in err and "all empty" in err and len(err.strip().splitlines()) == 1
    code, stdout, err = ablate(cli, setup, *flags, "--bad-masks", "skip", "--json", tmp_path / "skip.json")
    assert code == 0, err
    record = json.loads((tmp_path / "skip.json").read_text())
    skipped = record["bad_masks"]
    assert skipped["images"] == 1 and 0 < skipped["episodes_skipped"] < 30 and "episodes skipped" in stdout
    assert (
        len(next(iter(record["models"].values()))["conditions"]["original"][0]["per_episode"])
        == 30 - skipped["episodes_skipped"]
    )


def test_a_mask_of_another_size_than_its_image_is_an_error_naming_it(cli, setup, tmp_path):
    data = tmp_path / "sized"
    shutil.copytree(setup / "data", data)
    wrong = data / "masks" / "test" / "class2" / "01.png"
    Image.fromarray(np.full((SIZE * 2, SIZE * 2), 255, np.uint8)).save(wrong)
    code, _, err = ablate(cli, setup, "--dataset", "imagefolder", "--root", data)
    assert code == 2 and str(wrong) in err and "never resized" in err and len(err.strip().splitlines()) == 1
