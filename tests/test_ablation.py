"""Ablation arithmetic with hand-computable oracle "models" on a tiny hand-built split.

Every class has its own background colour and its own foreground colour; the foreground is the
central square (the mask). A model whose features are the mean colour of the background region is
perfect on originals and background-only images, and exactly at chance on foreground-only images
with a black fill (all features equal -> ProtoNet ties -> argmax picks episode class 0 -> 1/N of the
queries right). A foreground-region model is the mirror image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from fewshot_cam.analysis.ablation import (
    apply_condition,
    compact,
    filler,
    reliance_index,
    run_ablation,
    summarize,
)
from fewshot_cam.data.episodes import make_episodes
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.stats import mean_ci95

WAYS, SIZE = 4, 8


@pytest.fixture(scope="module")
def split() -> Split:
    n_classes, per_class = 5, 4
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (n_classes, 3))
    fg = rng.integers(0, 256, (n_classes, 3))
    mask = np.zeros((SIZE, SIZE), bool)
    mask[2:6, 2:6] = True
    labels = np.repeat(np.arange(n_classes), per_class)
    images = np.where(mask[None, :, :, None], fg[labels][:, None, None], bg[labels][:, None, None]).astype(np.uint8)
    masks = np.broadcast_to(mask, (len(labels), SIZE, SIZE)).copy()
    return Split(images, labels, tuple(f"c{i}" for i in range(n_classes)), masks, "hand/test")


class RegionMean(nn.Module):
    """An images-to-features oracle: the mean colour of the pixels in ``region`` (H, W)."""

    def __init__(self, region: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("region", torch.from_numpy(region).float())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.region).sum(dim=(2, 3)) / self.region.sum()  # (B, 3)


def ablate(model, split, fill="black"):
    episodes = make_episodes(split, WAYS, 1, 3, n=6, seed=0)
    rows, local = compact(episodes.indices)
    images, masks = split.images[rows], split.masks[rows]
    before = images.copy()
    results = run_ablation(model, images, masks, local, 1, ["protonet"], fill=fill, batch_size=7)
    assert np.array_equal(images, before), "the images were modified in place"
    return results


def test_background_model_is_at_chance_on_foreground_only_and_perfect_on_background_only(split):
    results = ablate(RegionMean(~split.masks[0]), split)
    acc = {c: results[c]["protonet"] for c in results}
    assert np.all(acc["original"] == 100) and np.all(acc["background"] == 100)
    assert np.allclose(acc["foreground"], 100 / WAYS)
    summary = summarize(results, WAYS)
    assert summary["reliance"]["protonet"] == pytest.approx(1.0)
    diff = summary["differences"]["foreground-original"][0]
    assert diff["mean"] == pytest.approx(100 / WAYS - 100) and diff["ci95"] == pytest.approx(0.0)


def test_foreground_model_is_the_mirror_image(split):
    results = ablate(RegionMean(split.masks[0]), split)
    assert np.all(results["foreground"]["protonet"] == 100)
    assert np.allclose(results["background"]["protonet"], 100 / WAYS)
    assert summarize(results, WAYS)["reliance"]["protonet"] == pytest.approx(0.0)


def test_summary_is_mean_ci_and_paired_differences_of_the_per_episode_values():
    results = {
        "original": {"m": np.array([80.0, 60.0, 70.0])},
        "foreground": {"m": np.array([70.0, 60.0, 50.0])},
        "background": {"m": np.array([40.0, 20.0, 30.0])},
    }
    s = summarize(results, ways=5)
    orig = s["conditions"]["original"][0]
    assert orig["method"] == "m" and orig["mean"] == pytest.approx(70.0)
    assert orig["ci95"] == pytest.approx(mean_ci95([80, 60, 70]).ci95)
    bg = s["differences"]["background-original"][0]
    assert bg["mean"] == pytest.approx(-40.0) and bg["ci95"] == pytest.approx(0.0)
    fg = s["differences"]["foreground-original"][0]  # differences -10, 0, -20
    assert fg["mean"] == pytest.approx(-10.0) and fg["ci95"] == pytest.approx(mean_ci95([-10, 0, -20]).ci95)
    assert s["reliance"]["m"] == pytest.approx((30 - 20) / (70 - 20))


def test_reliance_index_by_hand():
    assert reliance_index(60.0, 80.0, ways=5) == pytest.approx(40 / 60)
    assert reliance_index(20.0, 80.0, ways=5) == 0.0
    assert reliance_index(50.0, 20.0, ways=5) is None  # original at chance: undefined


def test_conditions_fill_the_right_pixels_and_never_in_place(split):
    images = torch.from_numpy(split.images[:3].copy())
    masks = torch.from_numpy(split.masks[:3])
    before = images.clone()
    fg = apply_condition(images, masks, "foreground", "black")
    bg = apply_condition(images, masks, "background", "mean")
    orig = apply_condition(images, masks, "original", "mean")
    assert torch.equal(images, before) and orig.data_ptr() != images.data_ptr() and torch.equal(orig, images)
    assert torch.equal(fg[masks], images[masks]) and (fg[~masks] == 0).all()
    means = images.float().mean(dim=(1, 2)).round().to(torch.uint8)  # (3, 3) per-image mean colour
    assert torch.equal(bg[~masks], images[~masks])
    assert torch.equal(bg[masks], means[:, None].expand(-1, int(masks[0].sum()), -1).reshape(-1, 3))


def test_blur_is_a_gaussian_blur_and_masks_must_match_the_images(split):
    x = torch.rand(2, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    blurred = filler(x, "blur")
    assert blurred.std() < x.std() / 2  # heavily smoothed
    assert torch.allclose(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.05)
    images = torch.from_numpy(split.images[:2])
    with pytest.raises(ValueError, match="do not match"):
        apply_condition(images, torch.ones(2, 4, 4, dtype=torch.bool), "foreground", "mean")
    with pytest.raises(UserError, match="choose from mean, black, blur"):
        apply_condition(images, torch.from_numpy(split.masks[:2]), "foreground", "noise")


def test_compact_keeps_only_used_images():
    indices = torch.tensor([[[7, 3], [3, 9]]])  # (E=1, N=2, 2)
    rows, local = compact(indices)
    assert rows.tolist() == [3, 7, 9] and torch.equal(torch.from_numpy(rows)[local], indices)
