"""The built-in benchmark: determinism, masks, the planted background shortcut, image-folder round trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv
from PIL import Image
from scipy import ndimage

from fewshot_cam.data import synthetic_draw as draw
from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.preview import _outline, _tile, save_grid
from fewshot_cam.data.synthetic import (
    VARIANTS,
    SynthConfig,
    class_background,
    class_table,
    generate_arrays,
    generate_split,
    load_synthetic,
    write_synthetic,
)
from fewshot_cam.errors import UserError

SMALL = SynthConfig(image_size=16, images_per_class=8)


@pytest.fixture(scope="module")
def arrays() -> dict:
    """Every split at 16 px with the default 60 images per class (about a second)."""
    cfg = SynthConfig(image_size=16)
    return {split: generate_arrays(split, cfg) for split in ("train", "val", "test")}


def test_same_seed_same_images_and_other_seed_differs():
    a, b = generate_split("val", SMALL), generate_split("val", SMALL)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    c = generate_split("val", replace(SMALL, seed=1))
    assert a.class_names == c.class_names and not np.array_equal(a.images, c.images)


def test_scene_does_not_depend_on_resolution():
    """A mask drawn at 32 px, average-pooled to 16 px, matches the 16 px mask (same draws, finer grid)."""
    small, big = generate_split("test", SMALL), generate_split("test", replace(SMALL, image_size=32))
    pooled = big.masks.reshape(-1, 16, 2, 16, 2).mean((2, 4)) >= 0.5
    iou = (pooled & small.masks).sum() / (pooled | small.masks).sum()
    assert iou > 0.85


def test_masks_are_neither_empty_nor_full(arrays):
    for a in arrays.values():
        share = a.masks.mean((1, 2))
        assert share.min() > 0.02 and share.max() < 0.8


def test_foreground_has_the_class_colour(arrays):
    """The mean colour under the mask has the hue of the class's colour family (circular distance)."""
    a = arrays["test"]
    fg = a.masks[..., None]
    mean_rgb = (a.images * fg).sum((1, 2)) / fg.sum((1, 2)) / 255
    hue = rgb_to_hsv(mean_rgb)[:, 0] * 360
    target = np.array([draw.COLOURS[a.classes[label].colour] for label in a.labels])
    gap = np.abs((hue - target + 180) % 360 - 180)
    assert np.mean(gap < 25) > 0.9


def test_background_family_is_visible_in_the_background(arrays):
    """Nearest-centroid on mean background colour (fit on val, scored on test) finds the family far above chance."""

    def features(a):
        bg = ~a.masks[..., None]
        return (a.images * bg).sum((1, 2)) / bg.sum((1, 2))  # (N, 3)

    val, test = arrays["val"], arrays["test"]
    centroids = np.stack([features(val)[val.backgrounds == f].mean(0) for f in range(16)])
    guess = ((features(test)[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(guess == test.backgrounds) > 0.4  # chance: 1/16


def test_shortcut_is_planted_in_train_only(arrays):
    cfg = SynthConfig()
    expected_train = cfg.shortcut_rate + (1 - cfg.shortcut_rate) / cfg.n_backgrounds
    for split, expected in (("train", expected_train), ("val", 1 / 16), ("test", 1 / 16)):
        a = arrays[split]
        agree = np.mean(a.backgrounds == a.class_backgrounds[a.labels])
        n = len(a.labels)
        assert abs(agree - expected) < 4 * np.sqrt(expected * (1 - expected) / n), (split, agree)


def test_shortcut_rate_zero_removes_it():
    a = generate_arrays("train", SynthConfig(image_size=8, shortcut_rate=0.0))
    agree = np.mean(a.backgrounds == a.class_backgrounds[a.labels])
    assert abs(agree - 1 / 16) < 4 * np.sqrt(1 / 16 * 15 / 16 / len(a.labels))


def test_class_table_names_order_and_attributes():
    table = class_table(SynthConfig())
    specs = [s for split in ("train", "val", "test") for s in table[split]]
    assert [len(table[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    assert [s.id for s in specs] == list(range(100))
    assert len({(s.colour, s.shape, s.pattern) for s in specs}) == 100
    for split in table.values():
        names = [s.name for s in split]
        assert names == sorted(names)
    assert class_background(17, SynthConfig()) == 17 % 16
    split = generate_split("val", SMALL)
    assert split.class_names == tuple(s.name for s in table["val"])
    assert split.class_sizes() == [8] * 16


def test_load_synthetic_is_the_default_config_at_that_size():
    a, b = load_synthetic("val", 8), generate_split("val", SynthConfig(image_size=8))
    assert np.array_equal(a.images, b.images) and a.class_names == b.class_names and a.name == "synthetic/val"


@pytest.mark.parametrize("bad", [dict(shortcut_rate=1.5), dict(image_size=4), dict(classes=(200, 50, 50))])
def test_bad_config_raises(bad):
    with pytest.raises(UserError):
        generate_split("test", replace(SMALL, **bad))
    with pytest.raises(UserError, match="unknown split 'dev'"):
        generate_split("dev", SMALL)


def test_written_folder_reads_back_identically(tmp_path):
    datasets = pytest.importorskip("fewshot_cam.data.datasets", reason="engineer A's imagefolder reader missing")
    cfg = SynthConfig(image_size=16, images_per_class=3, classes=(3, 2, 2))
    write_synthetic(tmp_path / "synth", cfg)
    for split in ("train", "val", "test"):
        want = generate_split(split, cfg)
        got = datasets.load_split("imagefolder", tmp_path / "synth", split, 16)
        assert got.class_names == want.class_names
        assert np.array_equal(got.labels, want.labels)
        assert np.array_equal(got.images, want.images) and np.array_equal(got.masks, want.masks)


def test_outline_matches_scipy_erosion():
    rng = np.random.default_rng(0)
    mask = ndimage.binary_dilation(rng.random((20, 20)) > 0.9)
    cross = ndimage.generate_binary_structure(2, 1)
    assert np.array_equal(_outline(mask), mask & ~ndimage.binary_erosion(mask, cross, border_value=0))


def test_preview_grid_holds_the_images(tmp_path):
    split = generate_split("val", SMALL)
    path = save_grid(split, tmp_path / "grid.png", n_classes=3, per_class=2, seed=0)
    sheet = np.asarray(Image.open(path).convert("RGB"))
    zoom, side = 6, 96  # 96 // 16
    assert sheet.shape == (3 * (side + 4) + 4, 190 + 2 * (side + 4), 3)
    tiles = [_tile(split.images[i], split.masks[i], zoom) for i in range(len(split.labels))]
    first = sheet[4:4 + side, 190:190 + side]
    assert any(np.array_equal(first, t) for t in tiles)


def test_planted_truth_variants():
    """control-bg: objects carry no class colour, and test backgrounds follow the class; control-fg's test
    split is the default one (only train's shortcut differs); the random objects leave every other draw."""
    bg = replace(VARIANTS["synthetic-control-bg"], image_size=16, images_per_class=30)
    test = generate_arrays("test", bg)
    assert np.array_equal(test.backgrounds, test.class_backgrounds[test.labels])
    assert len(set(test.class_backgrounds.tolist())) == len(test.classes)  # 20 families: one per test class
    fg = test.masks[..., None]
    hue = rgb_to_hsv((test.images * fg).sum((1, 2)) / fg.sum((1, 2)) / 255)[:, 0] * 360
    target = np.array([draw.COLOURS[test.classes[label].colour] for label in test.labels])
    assert np.mean(np.abs((hue - target + 180) % 360 - 180) < 25) < 0.3  # ~1/8 by chance, not the class's
    train = generate_arrays("train", bg)
    assert np.array_equal(train.backgrounds, train.class_backgrounds[train.labels])  # shortcut_rate 1
    same_draws = generate_arrays("test", replace(bg, objects="class"))
    assert np.array_equal(same_draws.backgrounds, test.backgrounds)
    default, control_fg = (generate_split("test", replace(VARIANTS[n], image_size=16, images_per_class=8))
                           for n in ("synthetic", "synthetic-control-fg"))
    assert np.array_equal(default.images, control_fg.images)
    assert load_synthetic("val", 16, variant="synthetic-control-bg").name == "synthetic-control-bg/val"


def test_data_synth_writes_the_planted_truth_options(cli, tmp_path):
    code, _, err = cli("data", "synth", "--out", tmp_path, "--images-per-class", 2, "--image-size", 8,
                       "--shortcut-rate", 1, "--objects", "random", "--novel-backgrounds", "class")
    assert code == 0, err
    want = generate_split("test", SynthConfig(image_size=8, images_per_class=2, shortcut_rate=1.0,
                                              objects="random", novel_backgrounds="class"))
    got = load_split("imagefolder", tmp_path, "test", 8)
    assert np.array_equal(got.images, want.images) and np.array_equal(got.masks, want.masks)
