"""Feature normalisation before a few-shot method: none, L2 or CL2N (the registry :data:`NORMALIZATIONS`).

SimpleShot (Wang, Chao, Weinberger & van der Maaten, "SimpleShot: Revisiting Nearest-Neighbor
Classification for Few-Shot Learning", arXiv:1911.04623, 2019) compares three transforms of every
support and query feature x, applied before the classifier:

- ``none`` (their UN): x unchanged;
- ``l2`` (L2N): x / ||x||;
- ``cl2n`` (CL2N): (x - m) / ||x - m||, with m the mean feature of the *base* (training) classes'
  images, computed with the same backbone (their ``train_mean``: every train-split image's feature).

Each transform acts on one feature vector at a time, so applying it to the (images, D) feature matrix
once, before episodes index into it, is the same as applying it to every episode's support and query
sets (and costs one pass). Division as in their code (no epsilon; a zero vector stays zero here).

How it composes with each method's own normalisation (see ``fewshot/``): ``logreg`` L2-normalises its
inputs itself (RFS's ``is_norm``), so ``l2`` changes nothing for it and ``cl2n`` means "centre, then its
L2"; ``baseline++`` / ``cosine-finetune`` scale inputs by 1/(||x|| + 1e-5) (Chen et al.'s
``distLinear``), so ``l2`` changes them only through that 1e-5; ``protonet-cosine`` is invariant to each
vector's scale, but its prototype is the mean of the (normalised) support vectors, so ``l2`` changes
it for K > 1 shots; ``protonet`` (squared Euclidean) and ``baseline`` (linear) see the transform fully.
"""

from __future__ import annotations

from typing import Callable

import torch

from fewshot_cam.errors import UserError
from fewshot_cam.registry import Registry

# normalisation(features (..., D), base_mean (D,) or None) -> (..., D)
Normalization = Callable[..., torch.Tensor]

NORMALIZATIONS: Registry[Normalization] = Registry("normalization")
NEEDS_BASE_MEAN = frozenset({"cl2n"})
"""Normalisations that need the base classes' mean feature."""


def unit_length(x: torch.Tensor) -> torch.Tensor:
    """x: (..., D) -> x / ||x|| over the last dim (a zero vector stays zero)."""
    norm = x.norm(dim=-1, keepdim=True)
    return x / torch.where(norm > 0, norm, torch.ones_like(norm))


@NORMALIZATIONS.register("none", help="features as the backbone gives them (SimpleShot's UN)")
def no_normalization(x: torch.Tensor, base_mean: torch.Tensor | None = None) -> torch.Tensor:
    """x: (..., D) -> x itself (the same tensor: today's numbers, bit for bit)."""
    return x


@NORMALIZATIONS.register("l2", help="x / ||x|| (SimpleShot's L2N; RFS's is_norm)")
def l2(x: torch.Tensor, base_mean: torch.Tensor | None = None) -> torch.Tensor:
    """x: (..., D) -> x / ||x||."""
    return unit_length(x)


@NORMALIZATIONS.register("cl2n", help="(x - m) / ||x - m||, m the base classes' mean feature (SimpleShot's CL2N)")
def cl2n(x: torch.Tensor, base_mean: torch.Tensor | None = None) -> torch.Tensor:
    """x: (..., D), base_mean: (D,) -> (x - m) / ||x - m||."""
    if base_mean is None:
        raise ValueError("cl2n needs the base classes' mean feature")
    return unit_length(x - base_mean.to(device=x.device, dtype=x.dtype))


def check_normalization(name: str) -> str:
    """``name`` if registered, else a UserError listing the valid ones."""
    NORMALIZATIONS.get(name)
    return name


def normalize_features(features: torch.Tensor, name: str, base_mean: torch.Tensor | None = None) -> torch.Tensor:
    """features: (N_images, D) (or (..., D)) -> the same shape, normalised by ``name``."""
    if name in NEEDS_BASE_MEAN and base_mean is None:
        raise UserError(f"normalization '{name}' needs the base classes' mean feature")
    return NORMALIZATIONS.get(name)(features, base_mean)


def base_mean(features: torch.Tensor) -> torch.Tensor:
    """The mean feature of the base split's images: (N_base, D) -> (D,), summed in float64."""
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"base features must be a non-empty (N, D) matrix, got {tuple(features.shape)}")
    return features.double().mean(dim=0).to(features.dtype)
