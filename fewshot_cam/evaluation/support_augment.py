"""Support augmentation at evaluation (``eval --support-augment A``): RFS's ``n_aug_support_samples``.

Tian et al. (RFS, ECCV 2020; rfs ``dataset/mini_imagenet.py`` ``MetaImageNet.__getitem__``) tile each
episode's support images A times (A = 5 in ``eval_fewshot.py``) and pass every copy through the
*training* transform; the un-augmented original is not kept, and queries are not augmented. A class
then has K*A support features, which every method here uses as its support set (Baseline's mini-batches,
ProtoNet's mean, logistic regression's fit).

We apply the checkpoint's own training augmentation (``config.augment``, the batched
:func:`fewshot_cam.training.augment.augment_batch`) on the model's device. Where RFS draws new copies
in every episode, we draw A copies of each distinct support image once per run (an image that is a
support image in two episodes has the same copies in both), so the extra cost is A forward passes per
distinct support image, not per episode slot. The copies' parameters come from one
``torch.Generator`` seeded by (seed, 1), drawn for every (image, copy) at once in image order, so they
do not depend on the batch size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fewshot_cam.config import from_dict
from fewshot_cam.errors import UserError
from fewshot_cam.models.features import frozen, model_device
from fewshot_cam.progress import progress as progress_bar
from fewshot_cam.training.augment import AugmentConfig, AugmentParams, augment_batch, gather_batch, sample_params


def checkpoint_augmentation(ckpt: dict, path: str) -> AugmentConfig:
    """The checkpoint's training augmentation (``config.augment``); UserError when it records none or none is on."""
    section = (ckpt.get("config") or {}).get("augment")
    if section is None:
        raise UserError("--support-augment needs the checkpoint's training augmentation, and it records none "
                        "(no config.augment)", path)
    cfg = from_dict(AugmentConfig, section, "augment", path)
    if not cfg.enabled:
        raise UserError("--support-augment: the checkpoint was trained without augmentation (augment.enabled: "
                        "false), so its copies would all be the same image", path)
    return cfg


def augmentation_seed(seed: int) -> int:
    """The support copies' generator seed, from (seed, 1): apart from the episode sampler's stream."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def take(params: AugmentParams, rows: slice) -> AugmentParams:
    """The parameters of rows ``rows`` of a batch of per-image parameters."""
    values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    return AugmentParams(**{k: v[rows] if isinstance(v, torch.Tensor) else v for k, v in values.items()})


def augmented_features(model: torch.nn.Module, images: torch.Tensor, copies: int, cfg: AugmentConfig, seed: int,
                       batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """images: (S, H, W, 3) uint8 -> (S, copies, D) float32 on the model's device: ``model.embed`` of
    ``copies`` augmentations of each image (row i * copies + a is copy a of image i)."""
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    device = model_device(model)
    total = len(images) * copies
    params = sample_params(total, cfg, torch.Generator().manual_seed(augmentation_seed(seed)))  # on the CPU
    outputs = []
    with frozen(model):
        for start in progress_bar(range(0, total, batch_size), desc="support copies", enabled=progress, unit="batch"):
            rows = slice(start, min(start + batch_size, total))
            index = torch.arange(rows.start, rows.stop) // copies  # (B,) which image
            x = augment_batch(gather_batch(images, index, device), take(params, rows))  # (B, 3, H, W)
            outputs.append(model.embed(x.contiguous(memory_format=torch.channels_last)).float())
    return torch.cat(outputs).view(len(images), copies, -1)


def expand_support(
    indices: torch.Tensor, shots: int, n_features: int, copies: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Episodes whose support images are replaced by their augmented copies.

    indices: (E, N, K+Q) into a feature matrix of ``n_features`` rows. Returns (support_rows (S,), the
    distinct rows used as support, and new indices (E, N, K*copies + Q)): the support copies of
    ``support_rows[s]`` are rows ``n_features + s * copies + a`` of the feature matrix extended by the
    (S * copies, D) copies' features; queries keep their rows.
    """
    support_rows, inverse = torch.unique(indices[:, :, :shots], return_inverse=True)  # (S,), (E, N, K)
    E, N, _ = inverse.shape
    copy = torch.arange(copies, device=indices.device)
    support = n_features + inverse.unsqueeze(-1) * copies + copy  # (E, N, K, copies)
    return support_rows, torch.cat([support.reshape(E, N, shots * copies), indices[:, :, shots:]], dim=2)
