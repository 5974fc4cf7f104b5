"""ProtoNet maths against plain per-episode, per-class loops and torch.cdist."""

import pytest
import torch
import torch.nn.functional as F

from fewshot_cam.errors import UserError
from fewshot_cam.fewshot.protonet import protonet_logits, prototypes
from fewshot_cam.losses.prototypical import prototypical_loss

E, N, K, Q, D = 3, 4, 2, 5, 6


@pytest.fixture(scope="module")
def episode():
    g = torch.Generator().manual_seed(0)
    return torch.randn(E, N, K, D, generator=g), torch.randn(E, N, Q, D, generator=g)


def test_prototypes_are_class_means(episode):
    support, _ = episode
    protos = prototypes(support)
    for e in range(E):
        for n in range(N):
            torch.testing.assert_close(protos[e, n], sum(support[e, n, k] for k in range(K)) / K)


def test_euclidean_logits_match_cdist_and_loop(episode):
    support, query = episode
    protos = prototypes(support)
    q = query.reshape(E, N * Q, D)
    logits = protonet_logits(q, protos, "euclidean")
    torch.testing.assert_close(logits, -torch.cdist(q, protos).square(), rtol=1e-4, atol=1e-4)
    for e in range(E):
        for m in range(N * Q):
            for n in range(N):
                expected = -((q[e, m] - protos[e, n]) ** 2).sum()
                torch.testing.assert_close(logits[e, m, n], expected, rtol=1e-4, atol=1e-4)


def test_cosine_logits_match_loop(episode):
    support, query = episode
    protos = prototypes(support)
    q = query.reshape(E, N * Q, D)
    logits = protonet_logits(q, protos, "cosine", scale=7.0)
    for e in range(E):
        for n in range(N):
            expected = 7.0 * F.cosine_similarity(q[e], protos[e, n][None], dim=1)
            torch.testing.assert_close(logits[e, :, n], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_loss_and_accuracy_match_per_episode_loop(episode, metric):
    support, query = episode
    loss, accuracy = prototypical_loss(support, query, metric)
    losses, hits = [], 0
    for e in range(E):
        protos = support[e].mean(1)  # (N, D)
        for n in range(N):
            for j in range(Q):
                if metric == "euclidean":
                    scores = -((query[e, n, j][None] - protos) ** 2).sum(1)
                else:
                    scores = 10.0 * F.cosine_similarity(query[e, n, j][None], protos, dim=1)
                losses.append(F.cross_entropy(scores[None], torch.tensor([n])))
                hits += int(scores.argmax() == n)
    torch.testing.assert_close(loss, torch.stack(losses).mean(), rtol=1e-5, atol=1e-5)
    assert accuracy.item() == pytest.approx(hits / (E * N * Q))


def test_unknown_metric():
    with pytest.raises(UserError, match="manhattan.*euclidean"):
        protonet_logits(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), "manhattan")
