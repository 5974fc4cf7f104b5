"""The episodic loss of prototypical networks (Snell et al., "Prototypical Networks for Few-shot
Learning", NeurIPS 2017): cross-entropy over :func:`fewshot_cam.fewshot.protonet.protonet_logits`.

L = -1/(NQ) sum_q log softmax_n(-d(f(q), c_n)), averaged over the E episodes of a step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_cam.fewshot.protonet import protonet_logits, prototypes


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
