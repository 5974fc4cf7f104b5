"""What replaces removed pixels, the mask dilation, and the background tiling of the ablation.

A fill must remove information: a "foreground only" image must not tell the model anything about the
background it lost, nor a "background only" image about the object. The default, ``dataset-mean``, is
one constant colour for every image: the mean of the model's own input normalisation (for our models
the ImageNet mean the backbone subtracts), so removed pixels are zero after normalisation (to within
uint8 rounding). ``black`` is the other constant. ``image-mean`` and ``blur`` are kept as named options
for comparison with earlier work, and their help says what they leak: both are computed from the whole
image, so the removed region's colour (``blur``: also its layout) survives in the filled one.

Fills work on a batch on any device: ``fill(x, mean) -> (B, 3, H, W)`` with x (B, 3, H, W) float in
[0, 255] and mean (3,) float in [0, 255], both on the same device.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from fewshot_cam.errors import UserError
from fewshot_cam.registry import Registry

Fill = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FILLS: Registry[Fill] = Registry("fill")
DEFAULT_FILL = "dataset-mean"


@FILLS.register("dataset-mean", help="the model's normalisation mean (its training data's mean colour), the "
                "same for every image: zero after normalisation, removes everything (default)")
def dataset_mean(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return mean.to(x.dtype).view(1, 3, 1, 1).expand_as(x)


@FILLS.register("black", help="0: a constant, removes everything (but is far from the data's mean colour)")
def black(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


@FILLS.register("image-mean", help="each image's own mean colour: LEAKS the removed region's average colour "
                "(a foreground-only image keeps its background's hue)")
def image_mean(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x)


@FILLS.register("blur", help="a heavy Gaussian blur of the whole image: LEAKS the removed region's colours "
                "and coarse layout")
def blur(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with the largest odd kernel below the image size and sigma = size / 6."""
    size = min(x.shape[-2:])
    kernel = size - 1 if size % 2 == 0 else size - 2
    return TF.gaussian_blur(x, kernel_size=max(kernel, 1), sigma=max(size / 6.0, 0.1))


def model_mean(model: torch.nn.Module) -> torch.Tensor:
    """(3,) the mean colour the model subtracts from its [0, 1] input, in [0, 255], on its device."""
    mean = model.mean  # FewShotClassifier's normalisation buffer (1, 3, 1, 1)
    return mean.detach().float().reshape(3) * 255.0


def apply_fill(images: torch.Tensor, keep: torch.Tensor, fill: str, mean: torch.Tensor) -> torch.Tensor:
    """A new uint8 batch: ``images`` (B, H, W, 3) uint8 where ``keep`` (B, H, W) bool, the fill elsewhere."""
    fn = FILLS.get(fill)
    x = images.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    filled = fn(x, mean.to(x.device)).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # (B, H, W, 3)
    return torch.where(keep[..., None], images, filled)


def dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow foreground masks (B, H, W) bool by ``pixels`` in every direction (a (2p+1)-square max-pool)."""
    if pixels < 0:
        raise UserError(f"--mask-dilate must be >= 0 pixels, got {pixels}")
    if pixels == 0:
        return masks
    grown = F.max_pool2d(masks[:, None].float(), 2 * pixels + 1, stride=1, padding=pixels)  # (B, 1, H, W)
    return grown[:, 0] > 0


def _extent(any_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and one past the last index of True along the last dim: (B, L) bool -> (B,), (B,)."""
    L = any_.shape[-1]
    first = any_.float().argmax(-1)
    last = L - any_.flip(-1).float().argmax(-1)
    return first, last


def tile_background(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Xiao et al.'s Only-BG-T: the foreground's bounding box refilled with tiles of the image's own background.

    images (B, H, W, 3) uint8, masks (B, H, W) bool foreground -> (tiled (B, H, W, 3) uint8, ok (B,) bool).
    Of the four strips outside the box (the rows above it, the rows below it, the columns left and right
    of it, each across the whole image) the largest is repeated periodically along its short axis, the
    strip itself staying in place, and the box is taken from that repetition; outside the box the image is
    unchanged. So the box holds only background pixels and no hole or silhouette is left. Xiao et al. tile
    the largest background rectangle; ours is the same on the four sides of the box. ``ok`` is False where
    the box covers the whole image (no background strip): the caller fills those boxes another way.
    """
    B, H, W, _ = images.shape
    y0, y1 = _extent(masks.any(2))  # (B,) rows of the box [y0, y1)
    x0, x1 = _extent(masks.any(1))  # (B,) columns [x0, x1)
    # candidate strips: (start, length) along the rows (top, bottom) or the columns (left, right)
    starts = torch.stack([torch.zeros_like(y0), y1, torch.zeros_like(x0), x1], 1)  # (B, 4)
    lengths = torch.stack([y0, H - y1, x0, W - x1], 1)  # (B, 4)
    areas = lengths * torch.tensor([W, W, H, H], device=images.device)
    best = areas.argmax(1)  # (B,)
    start = starts.gather(1, best[:, None])[:, 0]
    length = lengths.gather(1, best[:, None])[:, 0].clamp(min=1)
    along_rows = best < 2
    ys = torch.arange(H, device=images.device).expand(B, H)
    xs = torch.arange(W, device=images.device).expand(B, W)
    ty = torch.where(along_rows[:, None], start[:, None] + (ys - start[:, None]).remainder(length[:, None]), ys)
    tx = torch.where(along_rows[:, None], xs, start[:, None] + (xs - start[:, None]).remainder(length[:, None]))
    b = torch.arange(B, device=images.device)[:, None, None]
    tiled = images[b, ty[:, :, None], tx[:, None, :]]  # (B, H, W, 3)
    box = ((ys >= y0[:, None]) & (ys < y1[:, None]))[:, :, None] & ((xs >= x0[:, None]) & (xs < x1[:, None]))[:, None]
    return torch.where(box[..., None], tiled, images), areas.amax(1) > 0
