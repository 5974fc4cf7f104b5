"""Batched, gradient-free feature extraction: pooled embeddings for the few-shot methods, maps for analysis.

Images go in as uint8 (N, H, W, 3) (numpy or tensor, any device) and move to the model's device one batch
at a time as uint8. The model runs in eval mode under ``no_grad`` (its train/eval mode is restored after),
on channels-last inputs, with bfloat16 autocast when it lives on a CUDA device. Outputs are float32.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch

from fewshot_cam.data.transforms import to_float
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.progress import progress as progress_bar


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for an empty module."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Inference as feature extraction runs it: eval mode and ``no_grad``, bfloat16 autocast when the
    model lives on a CUDA device; the model's train/eval mode is restored after."""
    device = model_device(model)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), amp:
            yield
    finally:
        model.train(was_training)


def _run_batched(
    model: FewShotClassifier,
    images: np.ndarray | torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    progress: bool,
) -> torch.Tensor:
    """Apply ``fn`` ((B, 3, H, W) float -> (B, ...)) to every batch; concatenated float32 on the model's device."""
    device = model_device(model)
    outputs = []
    with frozen(model):
        starts = range(0, len(images), batch_size)
        for start in progress_bar(starts, desc="features", enabled=progress, unit="batch"):
            x = to_float(images[start : start + batch_size], device)  # (B, 3, H, W)
            x = x.contiguous(memory_format=torch.channels_last)
            outputs.append(fn(x).float())
    if not outputs:
        raise ValueError("extract_features needs at least one image")
    return torch.cat(outputs)


def extract_features(
    model: FewShotClassifier, images: np.ndarray | torch.Tensor, batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """Pooled embeddings ``model.embed``: images (N, H, W, 3) uint8 -> (N, C) float32 on the model's device."""
    return _run_batched(model, images, model.embed, batch_size, progress)


def extract_feature_maps(
    model: FewShotClassifier, images: np.ndarray | torch.Tensor, batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """Spatial maps ``model.forward_features``: (N, H, W, 3) uint8 -> (N, C, h, w) float32 on the model's device."""
    return _run_batched(model, images, model.forward_features, batch_size, progress)
