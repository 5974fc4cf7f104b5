"""Logistic regression on L2-normalised features (Tian et al., "Rethinking Few-Shot Image Classification:
a Good Embedding Is All You Need?", ECCV 2020; their ``meta_eval`` uses scikit-learn's
``LogisticRegression(penalty='l2', C=1.0, solver='lbfgs', multi_class='multinomial')``).

Features are scaled to unit length, x <- x / ||x||, and each episode fits the multinomial model
p(n | x) = softmax_n(w_n . x + b_n) by minimising scikit-learn's objective

    0.5 * ||W||_F^2 + C * sum_i CE(W x_i + b, y_i),        C = 1, intercept b unpenalised,

exactly, batched over episodes, with damped Newton steps in float64.

Two exact reductions keep the Newton system small. (1) The minimiser W lies in the span of the S
support features (any other component only adds to the penalty), so with X^T = Q R (reduced QR),
W = Q B and the problem becomes the same one over features R^T (S x r, r = min(S, D)). (2) The
objective does not change when one constant is added to every b_n; adding 0.5 * (sum_n b_n)^2 selects
the centred solution and makes the Hessian positive definite. Each Newton system is ((r + 1) N)^2.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

C = 1.0
MAX_ITER = 100
TOL = 1.0e-9


def _objective(theta, xt, y_onehot, penalty, c):
    """theta: (E, p, N), xt: (E, S, p), y_onehot: (S, N), penalty: (p,) -> f (E,), probs (E, S, N)."""
    z = torch.bmm(xt, theta)  # (E, S, N)
    ce = (torch.logsumexp(z, -1) - (z * y_onehot).sum(-1)).sum(-1)  # (E,)
    reg = 0.5 * (penalty[:, None] * theta.square()).sum((1, 2)) + 0.5 * theta[:, -1].sum(-1).square()
    return reg + c * ce, z.softmax(-1)


def _gradient_hessian(theta, probs, xt, y_onehot, penalty, c):
    """Gradient (E, p*N) and Hessian (E, p*N, p*N) of the objective (index a*N + n for theta[a, n])."""
    E, p, N = theta.shape
    grad = penalty[:, None] * theta + c * torch.bmm(xt.transpose(1, 2), probs - y_onehot)  # (E, p, N)
    grad[:, -1] += theta[:, -1].sum(-1, keepdim=True)  # gauge term on the intercepts
    u = (xt.unsqueeze(-1) * probs.unsqueeze(2)).flatten(2)  # (E, S, p*N): x_ia p_in
    hess = -c * torch.bmm(u.transpose(1, 2), u)  # -C sum_i (x_ia p_in)(x_ib p_im)
    diag = c * torch.einsum("esa,esb,esn->eabn", xt, xt, probs)  # C sum_i x_ia x_ib p_in, (E, p, p, N)
    diag = diag + torch.diag_embed(penalty).unsqueeze(-1)
    blocks = hess.view(E, p, N, p, N)
    blocks.diagonal(dim1=2, dim2=4).add_(diag)  # (E, p, p, N) view: n == m
    blocks[:, -1, :, -1, :] += 1.0  # gauge: 0.5 (sum_n b_n)^2
    return grad.flatten(1), hess


def fit_logreg(x: torch.Tensor, y: torch.Tensor, n_way: int, c: float = C, max_iter: int = MAX_ITER, tol: float = TOL):
    """Minimise 0.5 ||B||^2 + c sum_i CE(B^T x_i + b, y_i) for every episode.

    x: (E, S, r) float64 features, y: (S,) labels in [0, n_way) -> theta (E, r + 1, N): B, then b in the last row.
    Damped Newton (Armijo backtracking), stopped when, for every episode, the gradient max-norm is below
    ``tol`` or the Newton decrement g^T H^-1 g is below 1e-18 (the objective is then at its float64 optimum).
    """
    E, S, r = x.shape
    xt = torch.cat([x, x.new_ones(E, S, 1)], dim=-1)  # (E, S, p), p = r + 1
    y_onehot = F.one_hot(y, n_way).to(x.dtype)  # (S, N)
    penalty = torch.ones(r + 1, dtype=x.dtype, device=x.device)
    penalty[-1] = 0.0
    theta = x.new_zeros(E, r + 1, n_way)
    f, probs = _objective(theta, xt, y_onehot, penalty, c)
    for _ in range(max_iter):
        grad, hess = _gradient_hessian(theta, probs, xt, y_onehot, penalty, c)
        step = torch.cholesky_solve(grad.unsqueeze(-1), torch.linalg.cholesky(hess)).view_as(theta)
        converged = (grad.abs().amax(-1) < tol) | ((grad * step.flatten(1)).sum(-1) < 1e-18)  # (E,)
        if converged.all():
            break
        theta, f, probs = _line_search(theta, step, f, grad, xt, y_onehot, penalty, c)
    return theta


def _line_search(theta, step, f, grad, xt, y_onehot, penalty, c, tries: int = 30):
    """Per episode, the largest t in 1, 1/2, 1/4, ... with f(theta - t step) <= f - 1e-4 t grad.step."""
    decrease = (grad * step.flatten(1)).sum(-1)  # (E,)
    t = torch.ones_like(f)
    done = torch.zeros_like(f, dtype=torch.bool)
    new_theta, new_f = theta.clone(), f.clone()
    for _ in range(tries):
        cand = theta - t[:, None, None] * step
        cand_f, _ = _objective(cand, xt, y_onehot, penalty, c)
        ok = ~done & (cand_f <= f - 1e-4 * t * decrease)
        new_theta[ok], new_f[ok] = cand[ok], cand_f[ok]
        done |= ok
        if done.all():
            break
        t = torch.where(done, t, t / 2)
    _, probs = _objective(new_theta, xt, y_onehot, penalty, c)  # episodes without progress keep theta
    return new_theta, new_f, probs


def _fit_normalised(support: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """support: (E, N, K, D) -> span basis (E, D, r) and theta (E, r + 1, N), on unit-length float64 features."""
    E, N, K, D = support.shape
    x = F.normalize(support.reshape(E, N * K, D).double(), dim=-1)  # (E, S, D)
    basis, r = torch.linalg.qr(x.transpose(1, 2))  # (E, D, r), (E, r, S): x = r^T basis^T
    y = torch.arange(N, device=x.device).repeat_interleave(K)  # (S,), class-major like the support
    return basis, fit_logreg(r.transpose(1, 2), y, N, c)


def logreg(
    support: torch.Tensor, query: torch.Tensor, seeds: Sequence[int] | None = None, c: float = C
) -> torch.Tensor:
    """support: (E, N, K, D), query: (E, M, D) -> scores (E, M, N) (float64); ``seeds`` unused (deterministic)."""
    basis, theta = _fit_normalised(support, c)
    q = torch.bmm(F.normalize(query.double(), dim=-1), basis)  # (E, M, r): queries in the same basis
    return torch.baddbmm(theta[:, -1:].expand(-1, q.shape[1], -1), q, theta[:, :-1])


def logreg_weights(support: torch.Tensor, c: float = C) -> tuple[torch.Tensor, torch.Tensor]:
    """The fitted W (E, N, D) and b (E, N) in the original feature space (to compare with scikit-learn)."""
    basis, theta = _fit_normalised(support, c)
    return torch.bmm(basis, theta[:, :-1]).transpose(1, 2), theta[:, -1]
