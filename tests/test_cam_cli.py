"""End to end: ``fewshot-cam cam`` and ``fewshot-cam ablate`` on a tiny imagefolder with masks."""

from __future__ import annotations

import json
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


def test_ablate_writes_json_and_plot_and_original_equals_eval(cli, setup):
    out = setup / "ablate.json"
    code, stdout, err = ablate(cli, setup, "--masks", "gt", "--fill", "blur", "--methods", "protonet,logreg",
                               "--json", out, "--plot", setup / "bars.png")
    assert code == 0, err
    assert "warning" not in err and "BRI" in stdout
    record = json.loads(out.read_text())
    assert set(record["conditions"]) == {"original", "foreground", "background"}
    assert record["masks"] == "gt" and record["fill"] == "blur" and record["n_episodes"] == 4
    assert Image.open(setup / "bars.png").size[0] > 100
    code, _, err = cli("eval", "--checkpoint", setup / "ce.pt", "--ways", "3", "--shots", "1", "--queries", "2",
                       "--episodes", "4", "--seed", "3", "--device", "cpu", "--methods", "protonet,logreg",
                       "--json", setup / "eval.json")
    assert code == 0, err
    plain = json.loads((setup / "eval.json").read_text())
    for got, want in zip(record["conditions"]["original"], plain["results"]):
        assert got["method"] == want["method"] and got["per_episode"] == pytest.approx(want["per_episode"], abs=1e-6)


def test_ablate_with_own_cam_masks_warns(cli, setup):
    code, _, err = ablate(cli, setup, "--masks", "gradcam")
    assert code == 0 and "own" in err and "warning" in err
    code, _, err = ablate(cli, setup, "--masks", "scorecam", "--mask-model", setup / "camloss.pt",
                          "--cam-batch-size", "8")
    assert code == 0 and "warning" not in err


def test_ablate_gt_masks_without_masks_is_a_user_error(cli, setup):
    code, _, err = ablate(cli, setup, "--masks", "gt", "--dataset", "imagefolder", "--root", setup / "nomasks")
    assert code == 2 and "needs ground-truth masks" in err and len(err.strip().splitlines()) == 1
