"""Chunk sizes from a memory budget: never over the budget (nor ``batch_size``), and results identical
across chunk sizes against the per-episode oracles of tests/oracles.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import episode_loop

from fewshot_cam.fewshot import episodic
from fewshot_cam.fewshot.episodic import chunk_size, episode_bytes, evaluate_episodes


@pytest.mark.parametrize("ways,per_class,shots,dim", [(5, 16, 1, 640), (5, 20, 5, 640), (20, 35, 20, 64),
                                                      (20, 25, 10, 2048)])
@pytest.mark.parametrize("methods", [["protonet"], ["logreg"], ["protonet", "baseline", "logreg"]])
def test_chunk_never_exceeds_budget_or_batch_size(ways, per_class, shots, dim, methods):
    features = torch.zeros(10, dim)
    indices = torch.zeros(1000, ways, per_class, dtype=torch.long)
    per_episode = episode_bytes(ways, per_class, shots, dim, methods)
    assert per_episode >= 4 * ways * per_class * dim  # at least the gathered features
    for budget in (1, per_episode, 7 * per_episode + 3, 10**12):
        for batch_size in (1, 37, 500):
            size = chunk_size(features, indices, shots, methods, batch_size, budget)
            assert 1 <= size <= batch_size
            assert size == 1 or size * per_episode <= budget


def test_logreg_budget_grows_with_the_newton_system():
    small = episode_bytes(5, 20, 1, 640, ["logreg"])
    large = episode_bytes(5, 20, 20, 640, ["logreg"])
    assert large > 10 * small


def clustered(classes=6, per_class=12, dim=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, 1, dim, generator=g)
    return (means + torch.randn(classes, per_class, dim, generator=g)).reshape(-1, dim)


@pytest.mark.parametrize("budget", [1, 3 * 40_000, 10**9])
def test_results_identical_across_chunk_sizes(monkeypatch, budget):
    features = clustered()
    g = torch.Generator().manual_seed(1)
    indices = torch.stack([torch.stack([c * 12 + torch.randperm(12, generator=g)[:6]
                                        for c in torch.randperm(6, generator=g)[:3]]) for _ in range(7)])
    monkeypatch.setattr(episodic, "CPU_BUDGET", budget)
    methods = ["protonet", "protonet-cosine", "logreg", "baseline"]
    got = evaluate_episodes(features, indices, 2, methods, batch_size=500, seed=4)
    for m in methods:
        np.testing.assert_allclose(got[m], episode_loop(features, indices, 2, m, seed=4), atol=1e-6, err_msg=m)
