"""Prototypical networks (Snell et al., "Prototypical Networks for Few-shot Learning", NeurIPS 2017).

c_n = 1/K sum_k f(x_{n,k}) (class prototype), p(y = n | q) = softmax_n(-d(f(q), c_n)),
with d the squared Euclidean distance, or, for the cosine variant, logits s * cos(f(q), c_n).
Everything is batched over E episodes; all maths in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_cam.errors import UserError

METRICS = ("euclidean", "cosine")


def prototypes(support: torch.Tensor) -> torch.Tensor:
    """Class means. support: (E, N, K, D) -> (E, N, D)."""
    return support.float().mean(dim=2)


def protonet_logits(
    query: torch.Tensor, protos: torch.Tensor, metric: str = "euclidean", scale: float = 10.0
) -> torch.Tensor:
    """query: (E, M, D), protos: (E, N, D) -> logits (E, M, N).

    "euclidean": -||q - c||^2 = 2 q.c - |c|^2 - |q|^2 (one bmm; clamped so distances are >= 0);
    "cosine": ``scale`` * cos(q, c).
    """
    query, protos = query.float(), protos.float()
    if metric == "euclidean":
        dots = torch.bmm(query, protos.transpose(1, 2))  # (E, M, N)
        q2 = query.square().sum(-1, keepdim=True)  # (E, M, 1)
        c2 = protos.square().sum(-1).unsqueeze(1)  # (E, 1, N)
        return -(q2 + c2 - 2 * dots).clamp_min(0)
    if metric == "cosine":
        q = F.normalize(query, dim=-1)
        c = F.normalize(protos, dim=-1)
        return scale * torch.bmm(q, c.transpose(1, 2))  # (E, M, N)
    raise UserError(f"unknown ProtoNet metric '{metric}' (valid: {', '.join(METRICS)})")


def prototypical_loss(
    support: torch.Tensor, query: torch.Tensor, metric: str = "euclidean", scale: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy (fraction in [0, 1], detached) over all queries of all episodes.

    support: (E, N, K, D); query: (E, N, Q, D), where query [e, n] belongs to episode class n.
    """
    E, N, Q, D = query.shape
    logits = protonet_logits(query.reshape(E, N * Q, D), prototypes(support), metric, scale)  # (E, N*Q, N)
    labels = torch.arange(N, device=query.device).repeat_interleave(Q).repeat(E)  # (E*N*Q,)
    flat = logits.reshape(E * N * Q, N)
    loss = F.cross_entropy(flat, labels)
    accuracy = (flat.argmax(dim=1) == labels).float().mean().detach()
    return loss, accuracy
