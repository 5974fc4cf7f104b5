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


@pytest.mark.parametrize("solver", ["cholesky", "cg", "pcg", "auto"])
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


@pytest.mark.parametrize("solver", ["cg", "pcg"])
def test_solvers_predict_alike_when_support_is_smaller_than_dim(solver):
    support, query = episodes(5, 5, 64, n=6, seed=1)  # S = 25 < D = 64: the span reduction is exact
    a, b = logreg(support, query, solver="cholesky"), logreg(support, query, solver=solver)
    torch.testing.assert_close(a, b, atol=1e-8, rtol=0)
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def dense_problem(E=3, S=7, p=5, N=4, c=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(E, S, p - 1, generator=g, dtype=torch.float64)
    xt = torch.cat([x, torch.ones(E, S, 1, dtype=torch.float64)], -1)
    probs = torch.randn(E, S, N, generator=g, dtype=torch.float64).mul(2).softmax(-1)
    penalty = torch.ones(p, dtype=torch.float64)
    penalty[-1] = 0.0
    return xt, probs, penalty, c


def bound_matrix(xt, penalty, c, N):
    """Boehning's bound written out (E, pN, pN), index a*N + n: D (x) I + e_p e_p^T (x) 11^T + c/2 G (x) J."""
    E, S, p = xt.shape
    gram = xt.transpose(1, 2) @ xt
    J = torch.eye(N, dtype=xt.dtype) - 1.0 / N
    ep = torch.zeros(p, p, dtype=xt.dtype)
    ep[-1, -1] = 1.0
    ones = torch.ones(N, N, dtype=xt.dtype)
    return torch.stack([torch.kron(torch.diag(penalty), torch.eye(N, dtype=xt.dtype)) + torch.kron(ep, ones)
                        + 0.5 * c * torch.kron(gram[e], J) for e in range(E)])


def test_bound_solve_inverts_the_written_out_bound():
    xt, probs, penalty, c = dense_problem()
    E, S, p = xt.shape
    N = probs.shape[-1]
    r = torch.randn(E, p, N, dtype=torch.float64)
    got = logreg_newton.bound_solve(r, logreg_newton.bound_factor(xt, penalty, c), penalty)
    want = torch.linalg.solve(bound_matrix(xt, penalty, c, N), r.reshape(E, -1, 1)).view(E, p, N)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_bound_is_above_the_hessian():
    """Boehning (1992): diag(p) - p p^T <= (I - 11^T / N) / 2, so M - H is positive semi-definite."""
    for seed in range(4):
        xt, probs, penalty, c = dense_problem(seed=seed, c=3.0)
        hess = logreg_newton.hessian(probs, xt, penalty, c)
        gap = bound_matrix(xt, penalty, c, probs.shape[-1]) - hess
        assert torch.linalg.eigvalsh(gap).min() > -1e-10


def test_newton_stops_after_a_handful_of_steps(monkeypatch):
    """The old rule (absolute gradient 1e-9 or decrement 1e-18) ran all 100 steps at 5 shots; the relative one stops."""
    calls = []
    real = logreg_newton.gradient
    monkeypatch.setattr(logreg_newton, "gradient", lambda *a: calls.append(1) or real(*a))
    support, _ = episodes(5, 5, 64, n=20, seed=2)
    logreg_weights(support, solver="cholesky")
    assert len(calls) <= 10, len(calls)
