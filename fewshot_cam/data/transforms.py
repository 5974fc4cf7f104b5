"""uint8 image batches to model inputs: the one conversion every stage uses."""

from __future__ import annotations

import numpy as np
import torch


def to_float(images: torch.Tensor | np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1], contiguous in channels-last memory.

    The uint8 batch is moved to ``device`` first (4x fewer bytes than float over the bus).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if device is not None:
        images = images.to(device, non_blocking=True)
    x = images.permute(0, 3, 1, 2)  # (B, 3, H, W), a channels-last view
    return x.float().div_(255.0)
