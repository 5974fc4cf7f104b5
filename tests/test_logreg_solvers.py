"""The logistic-regression Newton solvers against scikit-learn (newton-cg, tol 1e-12) on 5 and 20 ways,
1, 5, 10, 20 shots, and the stopping rule: a handful of Newton steps, not ``max_iter``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fewshot_cam.fewshot import logreg_newton
from fewshot_cam.fewshot.logreg import logreg, logreg_weights


def episodes(ways: int, shots: int, dim: int, n: int = 3, seed: int = 0):
    """support (n, ways, shots, dim), query (n, ways*4, dim): shifted clusters, non-negative like ReLU features."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, ways, 1, dim, generator=g)
    support = (means + 1.2 * torch.randn(n, ways, shots, dim, generator=g)).relu()
    query = (means + 1.2 * torch.randn(n, ways, 4, dim, generator=g)).relu().reshape(n, ways * 4, dim)
    return support, query


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("ways,shots,dim", [(5, 1, 24), (5, 5, 24), (5, 10, 16), (5, 20, 16),
                                            (20, 1, 40), (20, 5, 16), (20, 10, 8), (20, 20, 8)])
def test_solver_matches_sklearn(ways, shots, dim, solver):
    from sklearn.linear_model import LogisticRegression

    support, query = episodes(ways, shots, dim)
    weight, bias = logreg_weights(support, solver=solver)
    scores = logreg(support, query, solver=solver)
    for e in range(len(support)):
        x = F.normalize(support[e].reshape(-1, dim).double(), dim=-1).numpy()
        y = np.repeat(np.arange(ways), shots)
        ref = LogisticRegression(C=1.0, solver="newton-cg", tol=1e-12, max_iter=1000).fit(x, y)
        np.testing.assert_allclose(weight[e].numpy(), ref.coef_, atol=1e-9)
        np.testing.assert_allclose(bias[e].numpy(), ref.intercept_ - ref.intercept_.mean(), atol=1e-9)
        q = F.normalize(query[e].double(), dim=-1).numpy()
        np.testing.assert_array_equal(scores[e].argmax(-1).numpy(), ref.predict(q))


def test_both_solvers_predict_alike_when_support_is_smaller_than_dim():
    support, query = episodes(5, 5, 64, n=6, seed=1)  # S = 25 < D = 64: the span reduction is exact
    a, b = logreg(support, query, solver="cholesky"), logreg(support, query, solver="cg")
    torch.testing.assert_close(a, b, atol=1e-8, rtol=0)
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_newton_stops_after_a_handful_of_steps(monkeypatch):
    """The old rule (absolute gradient 1e-9 or decrement 1e-18) ran all 100 steps at 5 shots; the relative one stops."""
    calls = []
    real = logreg_newton.gradient
    monkeypatch.setattr(logreg_newton, "gradient", lambda *a: calls.append(1) or real(*a))
    support, _ = episodes(5, 5, 64, n=20, seed=2)
    logreg_weights(support, solver="cholesky")
    assert len(calls) <= 10, len(calls)
