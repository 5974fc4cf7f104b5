"""Prototypical networks (Snell et al., "Prototypical Networks for Few-shot Learning", NeurIPS 2017):
nearest class centroid on frozen features.

c_n = 1/K sum_k f(x_{n,k}) (class prototype), p(y = n | q) = softmax_n(-d(f(q), c_n)), with d the
squared Euclidean distance (the paper's), or, for the cosine variant (Meta-Baseline, Chen et al. ICCV
2021), logits s * cos(f(q), c_n). Nothing is fitted. Everything is batched over E episodes; all maths in
float32. The episodic training loss over these logits is :mod:`fewshot_cam.losses.prototypical`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fewshot_cam.registry import Registry

METRICS: Registry[str] = Registry("ProtoNet metric")
METRICS.register("euclidean", "euclidean", help="squared Euclidean distance (Snell et al. 2017)")
METRICS.register("cosine", "cosine", help="scale * cosine similarity (Meta-Baseline)")


def prototypes(support: torch.Tensor) -> torch.Tensor:
    """Class means. support: (E, N, K, D) -> (E, N, D)."""
    return support.float().mean(dim=2)


def protonet_logits(
    query: torch.Tensor, protos: torch.Tensor, metric: str = "euclidean", scale: float = 10.0
) -> torch.Tensor:
    """query: (E, M, D), protos: (E, N, D) -> logits (E, M, N).

    "euclidean": -||q - c||^2 = 2 q.c - |c|^2 - |q|^2 (one bmm; norms by reductions that make no (E, M, D)
    temporary; clamped so distances are >= 0);
    "cosine": ``scale`` * cos(q, c).
    """
    METRICS.get(metric)
    query, protos = query.float(), protos.float()
    if metric == "cosine":
        q = F.normalize(query, dim=-1)
        c = F.normalize(protos, dim=-1)
        return scale * torch.bmm(q, c.transpose(1, 2))  # (E, M, N)
    # (E, N, D) x (E, D, M) then viewed (E, M, N): MKL runs this order 1.3x faster than query @ protos^T
    # at 20 ways (N small against M; BENCHMARKS.md)
    dots = torch.bmm(protos, query.transpose(1, 2)).transpose(1, 2)  # (E, M, N)
    q2 = torch.linalg.vector_norm(query, dim=-1).square().unsqueeze(-1)  # (E, M, 1)
    c2 = torch.linalg.vector_norm(protos, dim=-1).square().unsqueeze(1)  # (E, 1, N)
    return -(q2 + c2 - 2 * dots).clamp_min(0)


def protonet(
    support: torch.Tensor, query: torch.Tensor, seeds: Sequence[int] | None = None, metric: str = "euclidean"
) -> torch.Tensor:
    """support: (E, N, K, D), query: (E, M, D) -> scores (E, M, N); ``seeds`` unused (nothing is fitted)."""
    return protonet_logits(query, prototypes(support), metric=metric)


def protonet_cosine(support: torch.Tensor, query: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
    """ProtoNet with cosine similarity to the prototypes: support (E, N, K, D), query (E, M, D) -> (E, M, N)."""
    return protonet(support, query, seeds, metric="cosine")
