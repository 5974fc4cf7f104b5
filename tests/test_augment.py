"""Batched device augmentation against oracles: identity, torch.flip, torchvision's jitter and crop."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF

from fewshot_cam.data.transforms import to_float
from fewshot_cam.training.augment import (
    AugmentConfig,
    AugmentParams,
    augment,
    augment_batch,
    color_jitter,
    gather_batch,
    sample_params,
)

NO_JITTER = dict(brightness=0.0, contrast=0.0, saturation=0.0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (6, 12, 12, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_full_crop_without_jitter_or_flip_is_identity(images):
    cfg = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, **NO_JITTER)
    torch.testing.assert_close(augment(images, cfg, gen()), to_float(images), atol=1e-5, rtol=0)


def test_flip_equals_torch_flip(images):
    cfg = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0, **NO_JITTER)
    torch.testing.assert_close(augment(images, cfg, gen()), torch.flip(to_float(images), dims=[-1]), atol=1e-5, rtol=0)


def test_jitter_matches_torchvision_per_image(images):
    x = to_float(images)
    b, c, s = (torch.rand(len(x), generator=gen(i)) * 1.6 + 0.2 for i in (1, 2, 3))
    ours = color_jitter(x, b, c, s)
    for i in range(len(x)):  # oracle: torchvision's functional ops, one image at a time
        bright = TF.adjust_brightness(x[i], b[i].item())
        ref = TF.adjust_saturation(TF.adjust_contrast(bright, c[i].item()), s[i].item())
        torch.testing.assert_close(ours[i], ref, atol=1e-5, rtol=0)


def test_crop_matches_torchvision_resized_crop_on_the_pixel_grid():
    # A crop of an integer box upscaled 2x: bilinear sampling equals torchvision's resized_crop
    # (bilinear, no antialias) of the same box, except on the outermost output ring, where torchvision
    # repeats the box's edge and the grid reads the image's pixels just outside the box.
    x = torch.rand(1, 3, 8, 8, generator=gen(4))
    top, left, size = 2, 4, 4  # box rows 2..5, cols 4..7
    w = size / 8
    cx = (2 * left + size) / 8 - 1  # box centre in [-1, 1] coordinates
    cy = (2 * top + size) / 8 - 1
    theta = torch.tensor([[[w, 0.0, cx], [0.0, w, cy]]])
    one = torch.ones(1)
    params = AugmentParams(theta, one, one, one)
    images = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    ours = augment_batch(images, params, size=8)
    ref = TF.resized_crop(to_float(images), top, left, size, size, [8, 8], antialias=False)
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_output_in_unit_range_shape_and_dtype(images):
    out = augment(images, AugmentConfig(brightness=0.9, contrast=0.9, saturation=0.9), gen())
    assert out.shape == (6, 3, 12, 12) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_deterministic_per_seed_and_different_across_seeds(images):
    cfg = AugmentConfig()
    torch.testing.assert_close(augment(images, cfg, gen(7)), augment(images, cfg, gen(7)), rtol=0, atol=0)
    assert not torch.equal(augment(images, cfg, gen(7)), augment(images, cfg, gen(8)))


def test_sampled_crops_follow_the_configured_ranges():
    cfg = AugmentConfig(scale=(0.25, 0.5), ratio=(0.5, 2.0), hflip=0.5)
    p = sample_params(4000, cfg, gen(1))
    w, h = p.theta[:, 0, 0].abs(), p.theta[:, 1, 1]
    area, ratio = w * h, w / h
    unclamped = (w < 1) & (h < 1)
    assert area[unclamped].min() >= 0.25 - 1e-6 and area[unclamped].max() <= 0.5 + 1e-6
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 2.0 + 1e-6
    # the crop stays inside the image: |centre| + half-size <= 1 in [-1, 1] coordinates
    assert (p.theta[:, 0, 2].abs() + w).max() <= 1 + 1e-6 and (p.theta[:, 1, 2].abs() + h).max() <= 1 + 1e-6
    flipped = (p.theta[:, 0, 0] < 0).float().mean().item()
    assert math.isclose(flipped, 0.5, abs_tol=0.05)


def test_disabled_augmentation_only_converts(images):
    torch.testing.assert_close(augment(images, AugmentConfig(enabled=False), gen()), to_float(images))


def test_gather_batch_selects_rows(images):
    index = torch.tensor([4, 0, 4])
    assert torch.equal(gather_batch(images, index, torch.device("cpu")), images[[4, 0, 4]])


def test_rfs_pad_crop_jitter_flip_match_torchvision_on_the_same_parameters(images):
    """RFS's transform A with our drawn parameters: torchvision's pad (zeros), crop at the drawn offset,
    the jitter steps in the drawn order, then the flip; one image at a time."""
    cfg = AugmentConfig(crop="pad", padding=3, jitter_order="random")
    params = sample_params(len(images), cfg, gen(7))
    assert params.order is not None and len({tuple(o) for o in params.order.tolist()}) > 1  # orders differ
    assert params.flip.any() and not params.flip.all()
    ours = augment_batch(images, params)
    x = to_float(images)
    steps = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    factors = (params.brightness, params.contrast, params.saturation)
    for i in range(len(x)):
        top, left = params.offsets[i].tolist()
        ref = TF.crop(TF.pad(x[i], [3]), top, left, 12, 12)
        for step in params.order[i].tolist():
            ref = steps[step](ref, factors[step][i].item())
        if params.flip[i]:
            ref = TF.hflip(ref)
        torch.testing.assert_close(ours[i], ref, atol=1e-5, rtol=0)


def test_pad_crop_offsets_cover_the_padded_range():
    p = sample_params(2000, AugmentConfig(crop="pad", padding=8), gen(8))
    assert p.offsets.min().item() == 0 and p.offsets.max().item() == 16
    assert abs(p.flip.float().mean().item() - 0.5) < 0.05


def test_unknown_crop_and_order_raise():
    from fewshot_cam.errors import UserError

    with pytest.raises(UserError, match="augment.crop 'center'"):
        AugmentConfig(crop="center")
    with pytest.raises(UserError, match="augment.jitter_order 'x'"):
        AugmentConfig(jitter_order="x")
