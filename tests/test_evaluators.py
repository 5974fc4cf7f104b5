"""Few-shot evaluators against oracles: cdist loops, scikit-learn, plain per-episode torch training."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from oracles import chen_finetune, episode_loop

from fewshot_cam.errors import UserError
from fewshot_cam.fewshot import finetune
from fewshot_cam.fewshot.episodic import METHODS, check_methods, episode_seeds, evaluate_episodes
from fewshot_cam.fewshot.logreg import logreg, logreg_weights
from fewshot_cam.stats import mean_ci95

CLASSES, PER_CLASS, D = 8, 20, 12


def clustered_features(spread: float, seed: int = 0) -> torch.Tensor:
    """(CLASSES * PER_CLASS, D): class c's images are c*PER_CLASS .. (c+1)*PER_CLASS - 1."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(CLASSES, 1, D, generator=g) * spread
    return (means + torch.randn(CLASSES, PER_CLASS, D, generator=g)).reshape(-1, D)


def random_episodes(n: int, ways: int, per_class: int, seed: int = 0) -> torch.Tensor:
    """(n, ways, per_class) indices into clustered_features."""
    g = torch.Generator().manual_seed(seed)
    rows = [
        torch.stack([c * PER_CLASS + torch.randperm(PER_CLASS, generator=g)[:per_class]
                     for c in torch.randperm(CLASSES, generator=g)[:ways]])
        for _ in range(n)
    ]
    return torch.stack(rows)


@pytest.fixture(scope="module")
def data():
    return clustered_features(spread=0.5), random_episodes(12, ways=4, per_class=2 + 6)


def split(features, indices, shots):
    episode = features[indices]  # (E, N, K+Q, D)
    E, N, _, _ = episode.shape
    return episode[:, :, :shots], episode[:, :, shots:].reshape(E, -1, features.shape[1])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_protonet_matches_a_cdist_loop(data, metric):
    features, indices = data
    shots = 2
    name = "protonet" if metric == "euclidean" else "protonet-cosine"
    got = evaluate_episodes(features, indices, shots, [name], batch_size=5)[name]
    for e, episode in enumerate(indices):
        support, query = features[episode[:, :shots]], features[episode[:, shots:]]  # (N, K, D), (N, Q, D)
        protos = support.mean(1)
        q = query.reshape(-1, D)
        if metric == "euclidean":
            pred = torch.cdist(q, protos).argmin(1)
        else:
            cos = [[float(F.cosine_similarity(x, c, dim=0)) for c in protos] for x in q]
            pred = torch.tensor(cos).argmax(1)
        labels = torch.arange(len(episode)).repeat_interleave(query.shape[1])
        assert got[e] == pytest.approx(100.0 * (pred == labels).double().mean().item(), abs=1e-6)


def test_batched_equals_an_independent_per_episode_loop_for_every_method(data):
    features, indices = data
    methods = list(METHODS)
    batched = evaluate_episodes(features, indices[:5], 2, methods, batch_size=3, seed=3)
    for m in methods:  # oracle: cdist / sklearn / a per-episode torch.optim loop, one episode at a time
        np.testing.assert_allclose(batched[m], episode_loop(features, indices[:5], 2, m, seed=3), atol=1e-6, err_msg=m)
    assert len({tuple(batched[m]) for m in methods}) > 1, "episodes too easy to tell methods apart"


def test_logreg_agrees_with_sklearn_on_20_episodes():
    from sklearn.linear_model import LogisticRegression

    features, indices = clustered_features(spread=0.3, seed=1), random_episodes(20, ways=5, per_class=5 + 10, seed=1)
    support, query = split(features, indices, 5)
    scores = logreg(support, query)
    weight, bias = logreg_weights(support)
    agree = total = 0
    for e in range(len(indices)):
        x = F.normalize(support[e].reshape(-1, D).double(), dim=-1).numpy()
        q = F.normalize(query[e].double(), dim=-1).numpy()
        y = np.repeat(np.arange(5), 5)
        rfs = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)  # Tian et al.'s settings (lbfgs, L2)
        agree += int((rfs.predict(q) == scores[e].argmax(-1).numpy()).sum())
        total += len(q)
        tight = LogisticRegression(C=1.0, max_iter=10000, tol=1e-12).fit(x, y)
        np.testing.assert_allclose(weight[e].numpy(), tight.coef_, atol=1e-5)
        np.testing.assert_allclose(bias[e].numpy(), tight.intercept_ - tight.intercept_.mean(), atol=1e-5)
    assert agree >= total - 2, (agree, total)


@pytest.mark.parametrize("cosine", [False, True], ids=["baseline", "baseline++"])
def test_finetune_matches_chen_loop(data, cosine):
    features, indices = data
    support, query = split(features, indices[:3], 2)
    seeds = episode_seeds(7, range(3))
    method = finetune.baseline_pp if cosine else finetune.baseline
    batched = method(support, query, seeds)
    for e in range(3):
        expected = chen_finetune(support[e], query[e], seeds[e], cosine)
        torch.testing.assert_close(batched[e], expected, atol=1e-4, rtol=1e-4)


def test_every_method_is_perfect_on_separable_clusters():
    features = clustered_features(spread=8.0, seed=2)
    indices = random_episodes(4, ways=3, per_class=1 + 5, seed=2)
    accuracies = evaluate_episodes(features, indices, 1, list(METHODS))
    for m, acc in accuracies.items():
        assert (acc == 100.0).all(), (m, acc)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(UserError, match="svm.*choose from protonet"):
        check_methods("protonet,svm")
    assert check_methods("logreg, baseline++") == ["logreg", "baseline++"]


def test_ci_matches_scipy_t_interval():
    acc = np.random.default_rng(0).uniform(20, 90, size=37)
    interval = mean_ci95(acc)
    low, high = scipy.stats.t.interval(0.95, len(acc) - 1, loc=acc.mean(), scale=scipy.stats.sem(acc))
    assert interval.mean == pytest.approx((low + high) / 2, rel=1e-12)
    assert interval.ci95 == pytest.approx((high - low) / 2, rel=1e-10)
