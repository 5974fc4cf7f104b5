"""Mask files (checked loading, restriction to annotated images), boxes from true masks, GrabCut, and
``ablate`` / ``cam`` / ``data boxes-from-masks`` with ``--masks FILE.npz`` end to end."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot_cam.data.box_masks import boxes_from_masks, grabcut, rasterize_boxes
from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.mask_file import load_mask_file, restrict_to_masks, write_mask_file
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.models.checkpoint import save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model

SIZE, CLASSES, PER_CLASS = 16, 3, 6


def test_boxes_from_masks_by_hand():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 1, 1:3] = mask[0, 2, 2] = True  # an L: box rows 1-2, cols 1-2
    mask[0, 5:7, 6] = mask[0, 6, 4] = True  # two pieces (not 8-connected to each other)
    comp = np.zeros((8, 8), bool)
    comp[1:3, 1:3] = comp[5:7, 6:7] = comp[6:7, 4:5] = True
    np.testing.assert_array_equal(boxes_from_masks(mask, "component")[0], comp)
    whole = np.zeros((8, 8), bool)
    whole[1:7, 1:7] = True
    np.testing.assert_array_equal(boxes_from_masks(mask, "image")[0], whole)
    assert not boxes_from_masks(np.zeros((1, 4, 4), bool))[0].any()


def test_a_box_thinner_than_a_pixel_still_marks_one():
    mask = rasterize_boxes(np.array([[50, 10, 50, 10]]), (500, 400), 10)  # one original pixel
    assert mask.sum() == 1 and mask[0, 1]  # centre (50.5/50, 10.5/40) -> column 1, row 0


def test_grabcut_shrinks_a_box_towards_the_object():
    """A disc on a textured background, its box drawn loosely: GrabCut keeps the disc, drops the corners."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    disc = (yy - 24) ** 2 + (xx - 24) ** 2 <= 10 ** 2
    image = np.where(disc[..., None], [220, 40, 40], [40, 160, 60]) + rng.integers(-15, 15, (48, 48, 3))
    box = np.zeros((48, 48), bool)
    box[10:39, 10:39] = True
    cut = grabcut(image.clip(0, 255).astype(np.uint8), box)
    assert not (cut & ~box).any()  # outside the boxes stays background
    iou = lambda m: (m & disc).sum() / (m | disc).sum()  # noqa: E731
    assert iou(box) == pytest.approx(317 / 841, abs=0.01) and iou(cut) > 0.95  # disc area 317 px, box 29 x 29


def tiny_split() -> Split:
    images = np.zeros((6, 4, 4, 3), np.uint8)
    return Split(images, np.array([0, 0, 1, 1, 2, 2]), ("a", "b", "c"), name="mine/test")


def test_restrict_keeps_annotated_images_and_counts_them_per_class():
    split = tiny_split()
    masks = np.zeros((6, 4, 4), bool)
    masks[:, 1, 1] = True
    has = np.array([True, False, False, False, True, True])
    sub, eligible = restrict_to_masks(split, masks, has)
    assert eligible == {"a": 1, "b": 0, "c": 2}
    assert sub.class_names == ("a", "c") and sub.labels.tolist() == [0, 1, 1] and sub.masks.shape == (3, 4, 4)


def test_load_refuses_a_file_made_for_other_data(tmp_path):
    split = tiny_split()
    path = write_mask_file(tmp_path / "m.npz", split, np.ones((6, 4, 4)), np.ones(6, bool), [""] * 6, "box")
    masks, has = load_mask_file(path, split)
    assert masks.all() and has.all()
    other = Split(split.images, np.array([0, 0, 0, 1, 2, 2]), split.class_names, name="mine/test")
    with pytest.raises(UserError, match="fingerprint"):
        load_mask_file(path, other)
    with pytest.raises(UserError, match="made for dataset/split mine/test, but the data has mine/val"):
        load_mask_file(path, Split(split.images, split.labels, split.class_names, name="mine/val"))
    shuffled = split.images.copy()
    shuffled[0, :2] = 255  # image 0 of class 'a' replaced: same names and sizes, same fingerprint
    with pytest.raises(UserError, match="1 images differ .* image 0, class 'a'"):
        load_mask_file(path, Split(shuffled, split.labels, split.class_names, name="mine/test"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="bad.npz: not a mask file"):
        load_mask_file(tmp_path / "bad.npz", split)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("maskcli")
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        for i in range(PER_CLASS):
            mask = np.zeros((SIZE, SIZE), bool)
            y, x = rng.integers(0, SIZE // 2, 2)
            mask[y:y + 6, x:x + 4] = mask[y + 4:y + 8, x:x + 8] = True  # an L: its box is larger
            image = np.where(mask[..., None], rng.integers(0, 256, 3), rng.integers(0, 256, 3))
            for sub, picture in (("test", image), ("masks/test", mask.astype(np.uint8)[..., None].repeat(3, 2) * 255)):
                (tmp / "data" / sub / f"class{c}").mkdir(parents=True, exist_ok=True)
                Image.fromarray(picture.astype(np.uint8)).save(tmp / "data" / sub / f"class{c}" / f"{i:02d}.png")
    cfg = ModelConfig(backbone="tiny")
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=6)
    save_checkpoint(tmp / "ce.pt", {"model": model.state_dict(), "model_config": asdict(cfg), "num_classes": 6,
                                    "config": {"data": {"dataset": "imagefolder", "root": str(tmp / "data"),
                                                        "image_size": SIZE}}})
    return tmp


def test_boxes_from_masks_command_writes_box_masks(cli, setup):
    out = setup / "boxes.npz"
    code, stdout, err = cli("data", "boxes-from-masks", "--dataset", "imagefolder", "--root", setup / "data",
                            "--split", "test", "--image-size", SIZE, "--out", out)
    assert code == 0, err
    assert "18 of 18 images" in stdout
    split = load_split("imagefolder", setup / "data", "test", SIZE)
    masks, has = load_mask_file(out, split)
    assert has.all() and (masks >= split.masks).all() and masks.sum() > split.masks.sum()
    for m, truth in zip(masks, split.masks):
        rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
        assert m.sum() == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)  # exactly the L's box


def partial_mask_file(setup):
    """Box masks for the images 0, 2, 4 of each class only."""
    split = load_split("imagefolder", setup / "data", "test", SIZE)
    has = np.arange(len(split.images)) % PER_CLASS % 2 == 0
    return write_mask_file(
        setup / "partial.npz", split, boxes_from_masks(split.masks), has, ["x"] * len(has), "box"
    ), split


def test_ablate_with_a_mask_file_draws_only_annotated_images(cli, setup, capsys):
    path, split = partial_mask_file(setup)
    out = setup / "ablate.json"
    code, stdout, err = cli("ablate", "--checkpoint", setup / "ce.pt", "--ways", "3", "--shots", "1", "--queries", "2",
                            "--episodes", "3", "--seed", "0", "--device", "cpu", "--masks", path, "--json", out)
    assert code == 0, err
    record = json.loads(out.read_text())
    assert record["masks"] == str(path) and record["eligible_per_class"] == {f"class{c}": 3 for c in range(CLASSES)}
    boxes = boxes_from_masks(split.masks)[np.arange(len(split.images)) % PER_CLASS % 2 == 0]
    fraction = next(iter(record["models"].values()))["foreground_fraction"]
    assert fraction == pytest.approx(boxes.mean())  # every image of the 3 x 3 in use
    with pytest.raises(SystemExit) as exc:  # argparse's own usage error
        cli("ablate", "--checkpoint", setup / "ce.pt", "--ways", "3", "--shots", "1", "--masks", "boxes")
    assert exc.value.code == 2 and "or a FILE.npz" in capsys.readouterr().err


def test_cam_scores_against_a_mask_file(cli, setup):
    path, _ = partial_mask_file(setup)
    # --target top1: 3 annotated images a class leave no support images for a prototype target
    code, stdout, err = cli("cam", "--checkpoint", setup / "ce.pt", "--masks", path, "--n", "30", "--pictures", "2",
                            "--target", "top1", "--out", setup / "cam", "--device", "cpu")
    assert code == 0, err
    record = json.loads((setup / "cam" / "localization.json").read_text())
    assert record["n"] == 9 and record["eligible_per_class"]["class1"] == 3  # only the 9 annotated images


def test_a_mask_file_of_the_true_masks_gives_the_gt_ablation_exactly(cli, setup):
    """Every image annotated: same episodes, same masks, so the same numbers as --masks gt."""
    split = load_split("imagefolder", setup / "data", "test", SIZE)
    path = write_mask_file(setup / "true.npz", split, split.masks, np.ones(len(split.images), bool),
                           [""] * len(split.images), "true")
    records = []
    for masks in ("gt", path):
        out = setup / f"ablate-{len(records)}.json"
        code, _, err = cli("ablate", "--checkpoint", setup / "ce.pt", "--ways", "3", "--shots", "1", "--queries", "2",
                           "--episodes", "4", "--seed", "5", "--device", "cpu", "--masks", masks, "--json", out)
        assert code == 0, err
        records.append(json.loads(out.read_text()))
    assert records[0]["episodes_hash"] == records[1]["episodes_hash"]
    assert [r["models"] for r in records][0].keys() == records[1]["models"].keys()
    first, second = (next(iter(r["models"].values())) for r in records)
    assert first["conditions"] == second["conditions"]
