"""Training augmentation run batched on the device, from uint8 batches.

The usual few-shot recipe (Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019):
random resized crop, colour jitter (brightness, contrast, saturation) and horizontal flip. Each image
gets its own parameters, drawn on the CPU from an explicit ``torch.Generator`` (so a seed gives the
same augmentation on every device), then applied to the whole batch at once on the batch's device:

* crop + flip: one affine sampling grid per image, ``F.affine_grid`` / ``F.grid_sample`` (bilinear).
  A crop of relative width w, height h and centre (cx, cy), in [-1, 1] coordinates, is
  theta = [[s w, 0, cx], [0, h, cy]] with s = -1 for a flipped image, +1 otherwise.
* jitter: torchvision's ``adjust_brightness``, ``adjust_contrast``, ``adjust_saturation`` formulas,
  each a blend ``clamp(f * x + (1 - f) * y, 0, 1)`` with y = 0, the image's mean grey level, and the
  pixel's grey level respectively; in that fixed order (``jitter_order: fixed``, as Chen et al.'s
  ``ImageJitter``), or in a random order per image (``random``, as torchvision's ``ColorJitter``).

``crop: pad`` replaces the resized crop by RFS's (Tian et al., ECCV 2020, ``transform_A``)
``RandomCrop(size, padding)``: the image is zero-padded by ``padding`` pixels on every side and a
window of the image's own size is cut at a uniform integer offset (no resampling), then flipped.
torchvision applies it to uint8 PIL images, rounding to 8 bits after each jitter step; we stay in float.

Normalisation is inside the model; the output is float in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from fewshot_cam.data.transforms import to_float
from fewshot_cam.errors import UserError, check_range, check_ranges

GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
CROPS = ("resized", "pad")
JITTER_ORDERS = ("fixed", "random")


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (defaults: Chen et al. 2019 / torchvision defaults)."""

    enabled: bool = True
    """False: feed the images as they are (no crop, jitter or flip)."""
    scale: tuple[float, ...] = (0.08, 1.0)
    """Random resized crop: range of the crop's area as a fraction of the image's (lo, hi)."""
    ratio: tuple[float, ...] = (0.75, 4.0 / 3.0)
    """Random resized crop: range of the crop's aspect ratio w / h, sampled log-uniformly (lo, hi)."""
    brightness: float = 0.4
    """Brightness factor drawn from [max(0, 1 - b), 1 + b]; 0 disables."""
    contrast: float = 0.4
    """Contrast factor drawn from [max(0, 1 - c), 1 + c]; 0 disables."""
    saturation: float = 0.4
    """Saturation factor drawn from [max(0, 1 - s), 1 + s]; 0 disables."""
    hflip: float = 0.5
    """Probability of a horizontal flip."""
    crop: str = "resized"
    """"resized": random resized crop (``scale``, ``ratio``); "pad": RFS's RandomCrop(size, padding=``padding``)."""
    padding: int = 8
    """Zero padding of each side for ``crop: pad`` (RFS: 8 at 84 px)."""
    jitter_order: str = "fixed"
    """"fixed": brightness, contrast, saturation; "random": a random order per image (torchvision's ColorJitter)."""

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise UserError(f"unknown augment.crop '{self.crop}' (valid: {', '.join(CROPS)})")
        if self.jitter_order not in JITTER_ORDERS:
            raise UserError(f"unknown augment.jitter_order '{self.jitter_order}' (valid: {', '.join(JITTER_ORDERS)})")
        check_ranges("augment", self, {"brightness": (0, None), "contrast": (0, None), "saturation": (0, None),
                                       "hflip": (0, 1), "padding": (0, None)})
        for key, (high, values) in {"scale": (1, self.scale), "ratio": (None, self.ratio)}.items():
            if len(values) != 2 or values[0] > values[1]:
                raise UserError(f"augment.{key} must be two numbers lo <= hi, got {list(values)}")
            for value in values:
                check_range(f"augment.{key}", value, 0, high, low_open=True)


@dataclass(frozen=True)
class AugmentParams:
    """Per-image parameters. theta: (B, 2, 3) affine crop/flip; brightness, contrast, saturation: (B,).

    For ``crop: pad``: offsets (B, 2) long, the (top, left) of the window in the padded image, flip (B,)
    bool and padding; theta is then unused. order: (B, 3) long, the jitter steps (0 brightness,
    1 contrast, 2 saturation) in the order each image gets them; None for the fixed order.
    """

    theta: torch.Tensor | None
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    offsets: torch.Tensor | None = None
    flip: torch.Tensor | None = None
    padding: int = 0
    order: torch.Tensor | None = None

    def to(self, device: torch.device) -> AugmentParams:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return AugmentParams(move(self.theta), move(self.brightness), move(self.contrast), move(self.saturation),
                             move(self.offsets), move(self.flip), self.padding, move(self.order))


def _uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


def sample_params(batch: int, cfg: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw every image's crop, flip and jitter factors on the CPU from ``generator``.

    Crop: area fraction a ~ U(scale), aspect r ~ logU(ratio), w = min(1, sqrt(a r)), h = min(1, sqrt(a / r))
    (relative to the image side; clamping replaces torchvision's retry loop), centre uniform so the
    crop stays inside the image. ``crop: pad``: integer offsets uniform in [0, 2 padding] (the window has
    the image's size). ``jitter_order: random``: a uniform permutation per image.
    """
    u = torch.rand(batch, 8, generator=generator, dtype=torch.float64)  # (B, 8)
    area = _uniform(u[:, 0], *cfg.scale)
    log_ratio = _uniform(u[:, 1], math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - w)
    cy = (2 * u[:, 3] - 1) * (1 - h)
    sign = torch.where(u[:, 4] < cfg.hflip, -1.0, 1.0).to(u)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([sign * w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)  # (B, 2, 3)

    def factor(col: torch.Tensor, strength: float) -> torch.Tensor:
        return _uniform(col, max(0.0, 1 - strength), 1 + strength).float()

    params = AugmentParams(
        theta.float(),
        factor(u[:, 5], cfg.brightness),
        factor(u[:, 6], cfg.contrast),
        factor(u[:, 7], cfg.saturation),
    )
    if cfg.crop == "pad":
        offsets = torch.randint(0, 2 * cfg.padding + 1, (batch, 2), generator=generator)
        params = replace(params, theta=None, offsets=offsets, flip=u[:, 4] < cfg.hflip, padding=cfg.padding)
    if cfg.jitter_order == "random":
        params = replace(params, order=torch.rand(batch, 3, generator=generator).argsort(dim=1))
    return params


def grey(x: torch.Tensor) -> torch.Tensor:
    """x: (B, 3, H, W) -> (B, 1, H, W) grey level (ITU-R 601-2 luma, as torchvision)."""
    r, g, b = x.unbind(dim=1)
    return (GREY[0] * r + GREY[1] * g + GREY[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return (f * x + (1.0 - f) * other).clamp_(0.0, 1.0)


def _jitter_step(x: torch.Tensor, step: int, factor: torch.Tensor) -> torch.Tensor:
    """Step 0 brightness, 1 contrast, 2 saturation (torchvision's formulas) with per-image factors (B,)."""
    if step == 0:
        return _blend(x, 0.0, factor)
    if step == 1:
        return _blend(x, grey(x).mean(dim=(1, 2, 3), keepdim=True), factor)
    return _blend(x, grey(x), factor)


def color_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                 order: torch.Tensor | None = None) -> torch.Tensor:
    """x: (B, 3, H, W) in [0, 1]; factors (B,) -> (B, 3, H, W): brightness, then contrast, then
    saturation, or per image in ``order`` (B, 3) (each round computes the three steps for the whole
    batch and keeps, per image, the one its order names)."""
    factors = (brightness, contrast, saturation)
    if order is None:
        for step in range(3):
            x = _jitter_step(x, step, factors[step])
        return x
    for r in range(3):
        steps = torch.stack([_jitter_step(x, step, factors[step]) for step in range(3)])  # (3, B, 3, H, W)
        x = steps[order[:, r].to(x.device), torch.arange(len(x), device=x.device)]  # (B, 3, H, W)
    return x


def pad_crop_flip(x: torch.Tensor, offsets: torch.Tensor, flip: torch.Tensor, padding: int) -> torch.Tensor:
    """RFS's RandomCrop(size, padding) + flip: x (B, 3, H, W) zero-padded by ``padding``, the H x W
    window at offsets (B, 2) = (top, left) of the padded image, mirrored where flip (B,) -> (B, 3, H, W)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)  # (B, 3, H + 2p, W + 2p), zeros outside
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, 3)
    return out.permute(0, 3, 1, 2)


def crop_flip(x: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """x: (B, 3, H, W); theta: (B, 2, 3) -> (B, 3, size, size) resampled bilinearly."""
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], 3, size, size], align_corners=False)  # (B, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(images: torch.Tensor, params: AugmentParams, size: int | None = None) -> torch.Tensor:
    """images: (B, H, W, 3) uint8 on any device -> (B, 3, size, size) float in [0, 1] on the same device."""
    x = to_float(images)  # (B, 3, H, W)
    params = params.to(x.device)
    if params.offsets is not None:
        x = pad_crop_flip(x, params.offsets, params.flip, params.padding)
    else:
        x = crop_flip(x, params.theta, size or x.shape[-1])
    return color_jitter(x, params.brightness, params.contrast, params.saturation, params.order)


def augment(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """images: (B, H, W, 3) uint8 -> augmented (B, 3, H, W) float in [0, 1] (or just converted if disabled)."""
    if not cfg.enabled:
        return to_float(images)
    return augment_batch(images, sample_params(images.shape[0], cfg, generator))


def gather_batch(images: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``index`` of a uint8 (N, H, W, 3) tensor, on ``device``.

    A CPU source bound for CUDA is gathered into a pinned buffer and copied asynchronously
    (PyTorch's pinned-memory cache keeps the buffer alive until the copy has finished).
    """
    if images.device == device:
        return images.index_select(0, index.to(device, non_blocking=True))
    if device.type == "cuda":
        out = torch.empty((len(index), *images.shape[1:]), dtype=images.dtype, pin_memory=True)
        torch.index_select(images, 0, index, out=out)
        return out.to(device, non_blocking=True)
    return images.index_select(0, index).to(device)
