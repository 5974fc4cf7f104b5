"""Chunk sizes from a memory budget: never over the budget (nor ``batch_size``), and results identical
across chunk sizes against the per-episode oracles of tests/oracles.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import episode_loop

from fewshot_cam.fewshot import episodic
from fewshot_cam.fewshot.episodic import chunk_size, episode_bytes, evaluate_episodes, hot_bytes


@pytest.mark.parametrize("ways,per_class,shots,dim", [(5, 16, 1, 640), (5, 20, 5, 640), (20, 35, 20, 64),
                                                      (20, 25, 10, 2048)])
@pytest.mark.parametrize("methods", [["protonet"], ["logreg"], ["baseline"], ["protonet", "baseline", "logreg"]])
def test_chunk_never_exceeds_budget_or_batch_size(ways, per_class, shots, dim, methods):
    features = torch.zeros(10, dim)
    indices = torch.zeros(1000, ways, per_class, dtype=torch.long)
    total = episode_bytes(ways, per_class, shots, dim, methods)
    hot = hot_bytes(ways, per_class, shots, dim, methods)
    assert total >= 4 * ways * per_class * dim  # at least the gathered features
    assert hot <= total
    for budget in (1, hot, total, 7 * total + 3, 10**12):
        for batch_size in (1, 37, 500):
            size = chunk_size(features, indices, shots, methods, batch_size, (budget, 4 * budget))
            assert 1 <= size <= batch_size
            assert size == 1 or (size * hot <= budget and size * total <= 4 * budget)


def test_fine_tuning_chunks_are_bounded_by_their_weights_not_the_gathered_rows():
    """Fine-tuning rereads only its weights each step: its cache-sized chunk is far larger than ProtoNet's."""
    features, indices = torch.zeros(10, 640), torch.zeros(1000, 20, 25, dtype=torch.long)
    budget = (8 * 2**20, 2**30)
    assert chunk_size(features, indices, 10, ["baseline"], 500, budget) >= 5 * chunk_size(
        features, indices, 10, ["protonet"], 500, budget)


def test_logreg_budget_grows_with_the_support_not_the_feature_dimension():
    """The Newton loop works in the span of the support (r = min(S, D)): its memory grows with S, not D."""
    small = hot_bytes(5, 21, 1, 640, ["logreg"])
    large = hot_bytes(5, 21, 20, 640, ["logreg"])
    assert large > 10 * small
    assert hot_bytes(5, 21, 20, 4096, ["logreg"]) == large
    assert episode_bytes(5, 21, 20, 4096, ["logreg"]) > episode_bytes(5, 21, 20, 640, ["logreg"])


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
    monkeypatch.setattr(episodic, "CPU_MEMORY_BUDGET", budget)
    methods = ["protonet", "protonet-cosine", "logreg", "baseline"]
    got = evaluate_episodes(features, indices, 2, methods, batch_size=500, seed=4)
    for m in methods:
        np.testing.assert_allclose(got[m], episode_loop(features, indices, 2, m, seed=4), atol=1e-6, err_msg=m)


def test_gather_episodes_is_the_plain_index_and_slice():
    features = clustered()
    indices = torch.randint(0, len(features), (4, 3, 7))
    support, query = episodic.gather_episodes(features, indices, 2)
    assert support.shape == (4, 3, 2, 10) and query.shape == (4, 15, 10)
    torch.testing.assert_close(support, features[indices][:, :, :2], rtol=0, atol=0)
    torch.testing.assert_close(query, features[indices][:, :, 2:].reshape(4, 15, 10), rtol=0, atol=0)


@pytest.mark.parametrize("budget", [1, 10**9])
def test_predictions_are_the_per_episode_loops(monkeypatch, budget):
    """predict_episodes' per-query classes, chunked by the budget, against one-episode-at-a-time oracles."""
    from oracles import predict_episode

    features = clustered(per_class=10)
    g = torch.Generator().manual_seed(3)
    indices = torch.stack([torch.stack([c * 10 + torch.randperm(10, generator=g)[:5]
                                        for c in torch.randperm(6, generator=g)[:4]]) for _ in range(9)])
    monkeypatch.setattr(episodic, "CPU_BUDGET", budget)
    monkeypatch.setattr(episodic, "CPU_MEMORY_BUDGET", budget)
    methods = ["protonet", "protonet-cosine", "baseline"]
    got = episodic.predict_episodes(features, indices, 1, methods, seed=2)
    seeds = episodic.episode_seeds(2, range(len(indices)))
    for m in methods:
        want = torch.stack([predict_episode(m, features[ep[:, :1]], features[ep[:, 1:]].reshape(-1, 10), seeds[e])
                            for e, ep in enumerate(indices)])
        assert torch.equal(got[m], want), m
    accuracy = episodic.evaluate_episodes(features, indices, 1, methods, seed=2)
    labels = torch.arange(4).repeat_interleave(4)
    for m in methods:
        np.testing.assert_allclose(accuracy[m], (got[m] == labels).double().mean(1).numpy() * 100)


def test_reused_buffers_give_the_same_rows_as_fresh_gathers():
    features = clustered()
    buffers: dict = {}
    for e in (5, 2, 7, 1):  # growing and shrinking chunks reuse and regrow the buffers
        indices = torch.randint(0, len(features), (e, 3, 4))
        want = episodic.gather_episodes(features, indices, 1)
        got = episodic.gather_episodes(features, indices, 1, buffers)
        for w, g in zip(want, got):
            assert torch.equal(w, g)
    grad = features.clone().requires_grad_()
    support, _ = episodic.gather_episodes(grad, indices, 1, buffers)
    support.sum().backward()  # out= would refuse autograd: gradients flow through the plain gather
    assert grad.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_support_means_are_the_class_means_of_the_gathered_support(dtype):
    features = clustered().to(dtype)
    indices = torch.randint(0, len(features), (4, 3, 7))
    support, query = episodic.gather_episodes(features, indices, 5)
    means, query2 = episodic.gather_episodes(features, indices, 5, support_means=True)
    assert means.shape == (4, 3, 1, 10) and torch.equal(query, query2)
    torch.testing.assert_close(means.float(), support.float().mean(2, keepdim=True), atol=1e-6, rtol=1e-6)
