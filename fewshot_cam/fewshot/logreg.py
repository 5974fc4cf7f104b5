"""Logistic regression on L2-normalised features (Tian et al., "Rethinking Few-Shot Image Classification:
a Good Embedding Is All You Need?", ECCV 2020; their ``meta_eval`` uses scikit-learn's
``LogisticRegression(penalty='l2', C=1.0, solver='lbfgs', multi_class='multinomial')``).

Features are scaled to unit length, x <- x / ||x||, and each episode fits the multinomial model
p(n | x) = softmax_n(w_n . x + b_n) by minimising scikit-learn's objective

    0.5 * ||W||_F^2 + C * sum_i CE(W x_i + b, y_i),        C = 1, intercept b unpenalised,

exactly, batched over episodes, with damped Newton steps in float64 (:mod:`fewshot_cam.fewshot.logreg_newton`).
scikit-learn uses L-BFGS to its ``tol``; we stop at a gradient ``RTOL`` relative to the loss instead, so the
weights agree with a tightly-fitted scikit-learn to ~1e-10.

Two exact reductions keep the Newton system small. (1) The minimiser W lies in the span of the S
support features (any other component only adds to the penalty), so with X^T = Q R (reduced QR),
W = Q B and the problem becomes the same one over features R^T (S x r, r = min(S, D)). (2) The
objective does not change when one constant is added to every b_n; adding 0.5 * (sum_n b_n)^2 selects
the centred solution and makes the Hessian positive definite. Each Newton system has (r + 1) N unknowns:
it grows with the support size S, not with the feature dimension D, whenever S < D. By default it is solved
by conjugate gradients on Hessian-vector products (cost S (r + 1) N each), preconditioned by Boehning's
bound on the Hessian, whose inverse costs one (r + 1) x (r + 1) factorisation per fit, never a (r + 1) N
one (:data:`SOLVERS`; measured faster than the factorised Hessian at every ways/shots setting,
BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fewshot_cam.fewshot.logreg_newton import newton, one_thread_on_cpu
from fewshot_cam.registry import Registry

C = 1.0
MAX_ITER = 20
RTOL = 1.0e-13

SOLVERS: Registry[str] = Registry("logreg solver")
SOLVERS.register("auto", "auto", help="the fastest measured: pcg")
SOLVERS.register("cholesky", "cholesky", help="Newton with the full Hessian factorised")
SOLVERS.register("cg", "cg", help="inexact Newton, Jacobi-preconditioned CG on Hessian-vector products")
SOLVERS.register("pcg", "pcg", help="inexact Newton, CG preconditioned by Boehning's bound on the Hessian")

AUTO = "pcg"
"""What the solver "auto" means. Measured through the chunked evaluation (`bench_peers.py --only solvers`):
faster than the factorised Hessian at every ways/shots setting (1.4x at 5-way 1-shot, 16x at 5-way
20-shot, over 100x at 20-way 5-shot, in pcg's chunk sizes; about 5x at 5-way 20-shot in the factorised
Hessian's best) and as fast as Jacobi-preconditioned CG, with 2-4x fewer CG iterations, which matters
more on correlated features (Jacobi ignores the features' Gram matrix; the bound holds it)."""


def fit_logreg(
    x: torch.Tensor, y: torch.Tensor, n_way: int, c: float = C, max_iter: int = MAX_ITER, rtol: float = RTOL,
    solver: str = "auto",
) -> torch.Tensor:
    """Minimise 0.5 ||B||^2 + c sum_i CE(B^T x_i + b, y_i) for every episode.

    x: (E, S, r) float64 features, y: (S,) labels in [0, n_way) -> theta (E, r + 1, N): B, then b in the last row.
    Newton's method (:func:`fewshot_cam.fewshot.logreg_newton.newton`), stopped when every episode's gradient
    max-norm is below ``rtol * max(1, |f|)``, after at most ``max_iter`` steps (5-7 in practice).
    """
    SOLVERS.get(solver)
    E, S, r = x.shape
    if solver == "auto":
        solver = AUTO
    xt = torch.cat([x, x.new_ones(E, S, 1)], dim=-1)  # (E, S, p), p = r + 1
    y_onehot = F.one_hot(y, n_way).to(x.dtype)  # (S, N)
    penalty = torch.ones(r + 1, dtype=x.dtype, device=x.device)
    penalty[-1] = 0.0
    return newton(xt, y_onehot, penalty, c, solver, max_iter, rtol)


def _fit_normalised(support: torch.Tensor, c: float, solver: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """support: (E, N, K, D) -> span basis (E, D, r) and theta (E, r + 1, N), on unit-length float64 features."""
    E, N, K, D = support.shape
    x = F.normalize(support.reshape(E, N * K, D).double(), dim=-1)  # (E, S, D)
    with one_thread_on_cpu(x):
        basis, r = torch.linalg.qr(x.transpose(1, 2))  # (E, D, r), (E, r, S): x = r^T basis^T
    y = torch.arange(N, device=x.device).repeat_interleave(K)  # (S,), class-major like the support
    return basis, fit_logreg(r.transpose(1, 2), y, N, c, solver=solver)


def logreg(
    support: torch.Tensor, query: torch.Tensor, seeds: Sequence[int] | None = None, c: float = C,
    solver: str = "auto",
) -> torch.Tensor:
    """support: (E, N, K, D), query: (E, M, D) -> scores (E, M, N) (float64); ``seeds`` unused (deterministic)."""
    basis, theta = _fit_normalised(support, c, solver)
    q = torch.bmm(F.normalize(query.double(), dim=-1), basis)  # (E, M, r): queries in the same basis
    return torch.baddbmm(theta[:, -1:].expand(-1, q.shape[1], -1), q, theta[:, :-1])


def logreg_weights(support: torch.Tensor, c: float = C, solver: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """The fitted W (E, N, D) and b (E, N) in the original feature space (to compare with scikit-learn)."""
    basis, theta = _fit_normalised(support, c, solver)
    return torch.bmm(basis, theta[:, :-1]).transpose(1, 2), theta[:, -1]
