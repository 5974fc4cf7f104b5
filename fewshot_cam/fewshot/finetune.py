"""Baseline and Baseline++ (Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019).

A new classifier is trained on the frozen support features of each episode, then scores the queries:

- Baseline: linear, s_n(x) = w_n . x + b_n.
- Baseline++: cosine, s_n(x) = scale * cos(x, w_n) with w_n = g_n v_n / ||v_n|| (weight norm with a
  learnable per-class norm g_n, as ``distLinear`` in their code) and ``scale`` = 2 when the classifier has
  at most 200 classes, else 10 (``scale_factor`` in their ``backbone.py``; 2 for every N-way episode).

Chen's recipe (``BaselineFinetune.set_forward_adaptation``): 100 epochs over the support set in a fresh
random order each epoch, mini-batches of 4 (the last one smaller), cross-entropy, SGD with lr 0.01,
momentum 0.9, dampening 0.9, weight decay 1e-3; weights initialised like ``nn.Linear`` (U(+-1/sqrt(D))).

Batching: the classifiers of all E episodes are one (E, N, D) weight tensor, trained together with
``torch.bmm``. The loss is the sum over episodes of each episode's mean mini-batch cross-entropy, and SGD
acts element-wise, so every episode's classifier follows exactly the updates it would get alone. Each
episode draws its initial weights and its mini-batch orders from its own ``torch.Generator`` seeded by
``seeds[e]``, so the result does not depend on how episodes are chunked.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

EPOCHS = 100
LR = 0.01
MOMENTUM = 0.9
DAMPENING = 0.9
WEIGHT_DECAY = 1.0e-3
BATCH_SIZE = 4


def draw_episode_randomness(
    seeds: Sequence[int], n_way: int, dim: int, support_size: int, epochs: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per episode, from ``torch.Generator().manual_seed(seeds[e])`` on the CPU, in this order:
    weight (N, D) and bias (N,) ~ U(-1/sqrt(D), 1/sqrt(D)), then ``epochs`` permutations of the support set.

    Returns weight (E, N, D), bias (E, N), order (E, epochs, S) LongTensor, all on the CPU.
    """
    bound = 1.0 / math.sqrt(dim)
    weights, biases, orders = [], [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        weights.append(torch.empty(n_way, dim).uniform_(-bound, bound, generator=g))
        biases.append(torch.empty(n_way).uniform_(-bound, bound, generator=g))
        orders.append(torch.rand(epochs, support_size, generator=g).argsort(dim=-1))
    return torch.stack(weights), torch.stack(biases), torch.stack(orders)


def linear_scores(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Baseline: params [W (E, N, D), b (E, N)], x (E, B, D) -> W x + b, (E, B, N)."""
    weight, bias = params
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def unit(x: torch.Tensor) -> torch.Tensor:
    """``distLinear``'s input scaling x / (||x|| + 1e-5) over the last dim (done once, not every step)."""
    return x / (x.norm(dim=-1, keepdim=True) + 1e-5)


def cosine_scores(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Baseline++ (``distLinear``): params [v (E, N, D), g (E, N)], x (E, B, D) = unit(features)
    -> scale * x . g v/|v|, (E, B, N)."""
    v, g = params
    scale = 2.0 if v.shape[1] <= 200 else 10.0
    dots = torch.bmm(x, v.transpose(1, 2))  # (E, B, N): x . v, without forming g v / |v|
    return dots * (scale * g / v.norm(dim=-1)).unsqueeze(1)


def _train(
    support: torch.Tensor, params: list[torch.Tensor], scores, order: torch.Tensor, batch_size: int
) -> list[torch.Tensor]:
    """Chen's fine-tuning loop, every episode at once. support: (E, N, K, D); order: (E, epochs, S)."""
    E, N, K, D = support.shape
    x = support.reshape(E, N * K, D).float()  # (E, S, D), class-major
    y = torch.arange(N, device=x.device).repeat_interleave(K)  # (S,)
    params = [p.detach().clone().requires_grad_(True) for p in params]
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, dampening=DAMPENING, weight_decay=WEIGHT_DECAY)
    with torch.enable_grad():
        for epoch in range(order.shape[1]):
            for start in range(0, N * K, batch_size):
                idx = order[:, epoch, start : start + batch_size]  # (E, B)
                xb = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, D))  # (E, B, D)
                logits = scores(params, xb)  # (E, B, N)
                loss = F.cross_entropy(logits.flatten(0, 1), y[idx].flatten(), reduction="none")
                opt.zero_grad(set_to_none=True)
                loss.view(idx.shape).mean(dim=1).sum().backward()  # sum over episodes of each mean
                opt.step()
    return [p.detach() for p in params]


def _finetune(support, query, seeds, scores, cosine: bool, epochs: int, batch_size: int) -> torch.Tensor:
    E, N, K, D = support.shape
    weight, bias, order = draw_episode_randomness(seeds, N, D, N * K, epochs)
    weight, bias, order = (t.to(support.device) for t in (weight, bias, order))
    if cosine:  # distLinear's WeightNorm starts with g = ||v|| (the initial weights unchanged)
        support, query, params = unit(support.float()), unit(query.float()), [weight, weight.norm(dim=-1)]
    else:
        params = [weight, bias]
    params = _train(support, params, scores, order, batch_size)
    with torch.no_grad():
        return scores(params, query.float())


def baseline(
    support: torch.Tensor, query: torch.Tensor, seeds: Sequence[int], epochs: int = EPOCHS, batch_size: int = BATCH_SIZE
) -> torch.Tensor:
    """Baseline: a linear classifier trained on the support features (Chen et al. 2019).

    support: (E, N, K, D), query: (E, M, D), seeds: E per-episode seeds -> scores (E, M, N).
    """
    return _finetune(support, query, seeds, linear_scores, False, epochs, batch_size)


def baseline_pp(
    support: torch.Tensor, query: torch.Tensor, seeds: Sequence[int], epochs: int = EPOCHS, batch_size: int = BATCH_SIZE
) -> torch.Tensor:
    """Baseline++: a cosine classifier (scale 2, learnable class norms) trained on the support features.

    support: (E, N, K, D), query: (E, M, D), seeds: E per-episode seeds -> scores (E, M, N).
    """
    return _finetune(support, query, seeds, cosine_scores, True, epochs, batch_size)
