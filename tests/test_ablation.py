"""Ablation arithmetic with hand-computable oracle "models" on a tiny hand-built split.

Every class has its own background colour and its own foreground colour; the foreground is the
central square (the mask). A model whose features are the mean colour of the background region is
perfect on originals and on every condition that keeps (or tiles) the image's own background, and
exactly at chance where the background is filled (all features equal -> ProtoNet ties -> argmax picks
episode class 0 -> 1/N of the queries right). A foreground-region model is the mirror image. On
``mixed-rand`` the background model predicts the donor's class for every query, the foreground model
its own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import ndimage

from fewshot_cam.analysis.ablation import Swaps, compact, run_ablation
from fewshot_cam.analysis.ablation_masks import check_masks
from fewshot_cam.analysis.conditions import (
    CANDIDATES,
    CONDITIONS,
    check_conditions,
    choose_donors,
    donor_candidates,
)
from fewshot_cam.analysis.fills import (
    FILLS,
    apply_fill,
    dilate,
    model_mean,
    tile_background,
)
from fewshot_cam.analysis.reliance import BOOTSTRAP, bri, reliance_index, summarize
from fewshot_cam.data.episodes import make_episodes
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.models.classifier import IMAGENET_MEAN, IMAGENET_STD
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.stats import mean_ci95

WAYS, SIZE = 4, 8
ALL = CONDITIONS.names()


@pytest.fixture(scope="module")
def split() -> Split:
    n_classes, per_class = 6, 8
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
    """An images-to-features oracle: the mean colour of the pixels in ``region`` (H, W); its input
    normalisation mean (what the default fill uses) is the ImageNet one, as for our models."""

    def __init__(self, region: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("region", torch.from_numpy(region).float())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.region).sum(dim=(2, 3)) / self.region.sum()  # (B, 3)


def ablate(model, split, fill="dataset-mean", modify="queries", conditions=ALL, seed=0):
    episodes = make_episodes(split, WAYS, 1, 3, n=6, seed=0)
    donors = {c: choose_donors(split.labels, episodes.indices, CONDITIONS.get(c).donor, seed)
              for c in ("mixed-same", "mixed-rand")}
    rows, local = compact(episodes.indices, *(torch.from_numpy(r) for r, _ in donors.values()))
    swaps = Swaps(dict(zip(donors, local[1:])), {c: torch.from_numpy(t) for c, (_, t) in donors.items()})
    images, masks = split.images[rows], torch.from_numpy(split.masks[rows])
    before = images.copy()
    results = run_ablation(model, images, masks, local[0], 1, ["protonet"], check_conditions(conditions), swaps,
                           fill=fill, modify=modify, batch_size=7, episode_batch=4)
    assert np.array_equal(images, before), "the images were modified in place"
    return {c: r["protonet"] for c, r in results.items()}, episodes, rows, local


def test_background_model_follows_the_background_everywhere(split):
    acc, *_ = ablate(RegionMean(~split.masks[0]), split)
    for c in ("original", "background", "bg-tiled", "mixed-same"):
        assert np.all(acc[c]["accuracy"] == 100), c
    assert np.allclose(acc["foreground"]["accuracy"], 100 / WAYS)  # every feature the fill colour: a tie
    assert np.all(acc["mixed-rand"]["accuracy"] == 0) and np.all(acc["mixed-rand"]["following"] == 100)
    summary = summarize({c: {"protonet": r} for c, r in acc.items()}, WAYS)
    assert summary["reliance"]["protonet"]["value"] == pytest.approx(1.0)
    assert summary["reliance"]["protonet"]["ci95"] == pytest.approx([1.0, 1.0])
    assert summary["bg_gap"]["protonet"]["mean"] == pytest.approx(100.0)
    assert summary["background_following"]["protonet"]["mean"] == pytest.approx(100.0)


def test_foreground_model_is_the_mirror_image(split):
    acc, *_ = ablate(RegionMean(split.masks[0]), split)
    for c in ("original", "foreground", "mixed-same", "mixed-rand"):
        assert np.all(acc[c]["accuracy"] == 100), c
    assert np.allclose(acc["background"]["accuracy"], 100 / WAYS)
    assert np.all(acc["mixed-rand"]["following"] == 0)
    summary = summarize({c: {"protonet": r} for c, r in acc.items()}, WAYS)
    assert summary["reliance"]["protonet"]["value"] == pytest.approx(0.0)
    assert summary["bg_gap"]["protonet"]["mean"] == pytest.approx(0.0)


def test_modify_queries_keeps_the_supports_original_and_all_changes_both(split):
    """bg-tiled puts the class's background colour where the foreground model looks. With supports
    changed too, that colour is the class's own on both sides (100%); with original supports each query
    goes to the class whose foreground colour is nearest its background colour (a numpy oracle)."""
    model = RegionMean(split.masks[0])
    acc_all, *_ = ablate(model, split, modify="all", conditions=["bg-tiled"])
    assert np.all(acc_all["bg-tiled"]["accuracy"] == 100)
    acc_q, episodes, *_ = ablate(model, split, modify="queries", conditions=["bg-tiled"])
    fg = split.images[:, 3, 3].astype(float)  # (n, 3) each image's foreground colour
    bg = split.images[:, 0, 0].astype(float)
    expected = []
    for ep in episodes.indices.numpy():  # (N, K+Q)
        protos = fg[ep[:, 0]]  # (N, 3) one shot
        queries = bg[ep[:, 1:]].reshape(-1, 3)  # (N*Q, 3) class-major
        pred = ((queries[:, None] - protos[None]) ** 2).sum(-1).argmin(1)
        expected.append(100 * np.mean(pred == np.repeat(np.arange(WAYS), 3)))
    assert acc_q["bg-tiled"]["accuracy"] == pytest.approx(expected)


def test_summary_is_mean_ci_paired_differences_bg_gap_and_following_by_hand():
    per = {"original": [80.0, 60.0, 70.0], "foreground": [70.0, 60.0, 50.0], "background": [40.0, 20.0, 30.0],
           "mixed-same": [60.0, 60.0, 40.0], "mixed-rand": [40.0, 50.0, 40.0]}
    results = {c: {"m": {"accuracy": np.array(v)}} for c, v in per.items()}
    results["mixed-rand"]["m"]["following"] = np.array([20.0, 40.0, 30.0])
    s = summarize(results, ways=5)
    orig = s["conditions"]["original"][0]
    assert orig["method"] == "m" and orig["mean"] == pytest.approx(70.0)
    assert orig["ci95"] == pytest.approx(mean_ci95([80, 60, 70]).ci95)
    bg = s["differences"]["background-original"][0]
    assert bg["mean"] == pytest.approx(-40.0) and bg["ci95"] == pytest.approx(0.0)
    fg = s["differences"]["foreground-original"][0]  # differences -10, 0, -20
    assert fg["mean"] == pytest.approx(-10.0) and fg["ci95"] == pytest.approx(mean_ci95([-10, 0, -20]).ci95)
    gap = s["bg_gap"]["m"]  # differences 20, 10, 0
    assert gap["mean"] == pytest.approx(10.0) and gap["ci95"] == pytest.approx(mean_ci95([20, 10, 0]).ci95)
    follow = s["background_following"]["m"]
    assert follow["mean"] == pytest.approx(30.0) and follow["chance"] == 20.0
    assert follow["ci95"] == pytest.approx(mean_ci95([20, 40, 30]).ci95)
    assert s["reliance"]["m"]["value"] == pytest.approx((30 - 20) / (70 - 20))


def test_bri_ci_is_a_paired_percentile_bootstrap_over_episodes():
    rng = np.random.default_rng(5)
    original = rng.uniform(50, 90, 40)
    background = original * 0.5 + rng.normal(0, 5, 40)
    got = bri(background, original, ways=5, seed=3)
    draws = np.random.default_rng(3).integers(0, 40, (BOOTSTRAP, 40))
    loop = [(background[d].mean() - 20) / (original[d].mean() - 20) for d in draws]  # one resample at a time
    assert got["ci95"] == pytest.approx(list(np.percentile(loop, [2.5, 97.5])))
    assert got["value"] == pytest.approx((background.mean() - 20) / (original.mean() - 20))
    assert got["ci95"][0] < got["value"] < got["ci95"][1] and got["reason"] is None


def test_bri_is_not_reported_near_chance():
    original = np.array([22.0, 24.0, 23.0, 25.0])
    got = bri(original - 1, original, ways=5)
    assert got["value"] is None and got["ci95"] is None and "not clearly above chance" in got["reason"]
    assert reliance_index(60.0, 80.0, ways=5) == pytest.approx(40 / 60)
    assert reliance_index(50.0, 20.0, ways=5) is None


def test_default_fill_is_zero_after_the_models_own_normalisation():
    model = build_model(ModelConfig(backbone="tiny"), num_classes=3)
    images = torch.randint(0, 256, (2, SIZE, SIZE, 3), dtype=torch.uint8)
    keep = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    filled = apply_fill(images, keep, "dataset-mean", model_mean(model))
    normalised = (filled.float() / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert normalised.abs().max() < 0.01  # 0 to within uint8 rounding
    assert (apply_fill(images, keep, "black", model_mean(model)) == 0).all()
    own = apply_fill(images, keep, "image-mean", model_mean(model))
    assert torch.equal(own[:, 0, 0], images.float().mean(dim=(1, 2)).round().to(torch.uint8))
    assert set(FILLS.names()) == {"dataset-mean", "black", "image-mean", "blur"}
    assert "LEAKS" in FILLS.help("image-mean") and "LEAKS" in FILLS.help("blur")
    with pytest.raises(UserError, match="dataset-mean, black, image-mean, blur"):
        apply_fill(images, keep, "mean", model_mean(model))


def test_conditions_fill_the_right_pixels_and_never_in_place(split):
    images = torch.from_numpy(split.images[:3].copy())
    masks = torch.from_numpy(split.masks[:3])
    before = images.clone()
    mean = torch.tensor([10.0, 20.0, 30.0])
    build = {c: CONDITIONS.get(c).build for c in ALL}
    fg = build["foreground"](images, masks, images, masks, "dataset-mean", mean)
    bg = build["background"](images, masks, images, masks, "black", mean)
    orig = build["original"](images, masks, images, masks, "black", mean)
    assert torch.equal(images, before) and orig.data_ptr() != images.data_ptr() and torch.equal(orig, images)
    assert torch.equal(fg[masks], images[masks]) and (fg[~masks] == torch.tensor([10, 20, 30], dtype=torch.uint8)).all()
    assert torch.equal(bg[~masks], images[~masks]) and (bg[masks] == 0).all()
    donor = torch.from_numpy(split.images[-3:].copy())
    mixed = build["mixed-rand"](images, masks, donor, masks, "black", mean)
    assert torch.equal(mixed[masks], images[masks]) and torch.equal(mixed[~masks], donor[~masks])
    assert torch.equal(images, before)


def test_dilate_is_a_square_binary_dilation():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 12, 12)) > 0.93
    for p in (1, 2):
        want = np.stack([ndimage.binary_dilation(m, structure=np.ones((2 * p + 1, 2 * p + 1))) for m in masks])
        assert np.array_equal(dilate(torch.from_numpy(masks), p).numpy(), want)
    assert torch.equal(dilate(torch.from_numpy(masks), 0), torch.from_numpy(masks))


def test_tiling_fills_the_box_with_the_largest_background_strip():
    image = np.random.default_rng(0).integers(0, 256, (1, 10, 10, 3), dtype=np.uint8)
    mask = np.zeros((1, 10, 10), bool)
    mask[0, 4:7, 2:8] = True  # box rows 4-6, columns 2-7: strips top 4x10, bottom 3x10, left/right 10x2
    tiled, ok = tile_background(torch.from_numpy(image), torch.from_numpy(mask))
    want = image.copy()
    for y in range(4, 7):
        want[0, y, 2:8] = image[0, y % 4, 2:8]  # rows 0-3 repeated downwards
    assert ok.tolist() == [True] and np.array_equal(tiled.numpy(), want)
    mask = np.zeros((1, 10, 10), bool)
    mask[0, 1:, 3:5] = True  # box rows 1-9, columns 3-4: strips top 1x10, left 10x3, right 10x5
    tiled, _ = tile_background(torch.from_numpy(image), torch.from_numpy(mask))
    want = image.copy()
    want[0, 1:, 3:5] = image[0, 1:, 8:10]  # columns 5-9 repeated from column 5: 3 -> 8, 4 -> 9
    assert np.array_equal(tiled.numpy(), want)
    full = np.ones((1, 10, 10), bool)
    _, ok = tile_background(torch.from_numpy(image), torch.from_numpy(full))
    assert ok.tolist() == [False]


def test_donor_candidates_are_uniform_over_the_class_and_never_the_image_itself():
    labels = np.repeat(np.arange(3), 5)
    images = np.repeat(np.arange(15), 400)
    cands = donor_candidates(labels, images, labels[images], seed=0)[..., 0]  # same class: 4 others each
    assert (cands != images).all() and (labels[cands] == labels[images]).all()
    # a single candidate is fixed by (image, class, seed); over many seeds it is uniform over the 4 others
    seeds = donor_candidates(labels, np.zeros(4000, np.int64), np.zeros(4000, np.int64), seed=0)[..., 0]
    assert len(set(seeds.tolist())) == 1
    many = np.array([donor_candidates(labels, np.array([0]), np.array([0]), seed=s)[0, 0] for s in range(4000)])
    assert set(many.tolist()) == {1, 2, 3, 4} and np.bincount(many)[1:].min() > 900


def test_donors_are_seeded_outside_the_episode_and_of_the_right_class(split):
    episodes = make_episodes(split, WAYS, 1, 3, n=20, seed=0)
    idx = episodes.indices.numpy()
    same, target = choose_donors(split.labels, episodes.indices, "same", seed=0)
    other, target_o = choose_donors(split.labels, episodes.indices, "other", seed=0)
    cls = split.labels[idx]  # (E, N, K+Q)
    assert np.array_equal(split.labels[same], cls) and np.array_equal(
        target, np.broadcast_to(np.arange(WAYS)[:, None], cls.shape[1:])[None].repeat(20, 0)
    )
    assert (split.labels[other] != cls).all()
    assert np.array_equal(
        split.labels[other], np.take_along_axis(cls[:, :, 0], target_o.reshape(20, -1), 1).reshape(cls.shape)
    )
    for rows, tgt in ((same, target), (other, target_o)):  # a plain loop over slots: the selection rule
        assert (rows != idx).all()
        for e, n, j in np.ndindex(*idx.shape):
            cands = donor_candidates(split.labels, idx[e, n, j], cls[e, tgt[e, n, j], 0], 0)
            outside = [c for c in cands if c not in set(idx[e].ravel())]
            assert rows[e, n, j] == (outside[0] if outside else cands[0])
            assert split.labels[cands].tolist() == [cls[e, tgt[e, n, j], 0]] * CANDIDATES
    again, _ = choose_donors(split.labels, episodes.indices, "other", seed=0)
    changed, _ = choose_donors(split.labels, episodes.indices, "other", seed=1)
    assert np.array_equal(again, other) and not np.array_equal(changed, other)
    usable = np.ones(len(split.labels), bool)
    usable[::2] = False
    assert usable[choose_donors(split.labels, episodes.indices, "same", 0, usable)[0]].all()


def test_bad_masks_error_or_are_flagged(split):
    masks = torch.from_numpy(split.masks[:4].copy())
    masks[1] = False
    masks[2] = True
    rows = np.array([10, 11, 12, 13])
    with pytest.raises(UserError, match="image 11 of hand/test .* all empty; 2 of 4"):
        check_masks(masks, rows, split, "hand", None, "error", 0)
    assert check_masks(masks, rows, split, "hand", None, "skip", 0).tolist() == [True, False, False, True]


def test_compact_keeps_only_used_images():
    indices = torch.tensor([[[7, 3], [3, 9]]])  # (E=1, N=2, 2)
    donors = torch.tensor([[[4, 3], [9, 7]]])
    rows, (local, local_donors) = compact(indices, donors)
    assert rows.tolist() == [3, 4, 7, 9] and torch.equal(torch.from_numpy(rows)[local], indices)
    assert torch.equal(torch.from_numpy(rows)[local_donors], donors)
