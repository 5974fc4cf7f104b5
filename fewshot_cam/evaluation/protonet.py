"""ProtoNet evaluation on a frozen backbone (Snell et al., "Prototypical Networks for Few-shot
Learning", NeurIPS 2017): nearest class centroid.

c_n = 1/K sum_k f(x_{n,k});  y_hat(q) = argmin_n ||f(q) - c_n||^2 (Euclidean, default), or
argmax_n cos(f(q), c_n) (cosine variant). Nothing is trained; the maths is
:mod:`fewshot_cam.losses.prototypical`, batched over episodes.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fewshot_cam.losses.prototypical import prototypes, protonet_logits


def protonet(
    support: torch.Tensor, query: torch.Tensor, seeds: Sequence[int] | None = None, metric: str = "euclidean"
) -> torch.Tensor:
    """support: (E, N, K, D), query: (E, M, D) -> scores (E, M, N); ``seeds`` unused (nothing is fitted)."""
    return protonet_logits(query, prototypes(support), metric=metric)


def protonet_cosine(support: torch.Tensor, query: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
    """ProtoNet with cosine similarity to the prototypes: support (E, N, K, D), query (E, M, D) -> (E, M, N)."""
    return protonet(support, query, seeds, metric="cosine")
