"""Newton solvers for the batched multinomial logistic regression of :mod:`fewshot_cam.fewshot.logreg`.

Every episode minimises f(theta) = 0.5 ||B||^2 + 0.5 (sum_n b_n)^2 + c sum_i CE(theta^T xt_i, y_i), with
theta = [B; b] (p = r + 1 rows, N columns) and xt_i = [x_i; 1]. Two ways to get the Newton direction:

- ``"cholesky"``: the full (pN, pN) Hessian, factorised: cost S p^2 N + (pN)^3 / 3 per step.
- ``"cg"``: conjugate gradients on Hessian-vector products, Hv = c Xt^T (P * Z - P (P . Z)) + penalty V
  with Z = Xt V, Jacobi-preconditioned: cost about 4 S p N per product, no (pN)^2 storage.
- ``"pcg"``: the same CG preconditioned by Boehning's bound M >= H (Boehning, "Multinomial logistic
  regression algorithm", Ann. Inst. Stat. Math. 1992), which depends on the features only: its inverse is one
  (p, p) Cholesky factor per fit (:func:`bound_solve`), and it captures the features' correlations, which
  Jacobi cannot (2-4x fewer CG iterations on these problems).

Stopping rule (both): an episode is done when its gradient max-norm is below ``rtol * max(1, |f|)``;
at most ``max_iter`` Newton steps. The step length comes from Armijo backtracking, except when the predicted
decrease g.H^-1 g is below float64 resolution of f (then f cannot tell steps apart and the full Newton
step is taken: the iterate is inside Newton's quadratic region).
"""

from __future__ import annotations

import contextlib

import torch

EPS = torch.finfo(torch.float64).eps


def objective(theta, xt, y_onehot, penalty, c):
    """theta: (E, p, N), xt: (E, S, p), y_onehot: (S, N), penalty: (p,) -> f (E,), probs (E, S, N)."""
    z = torch.bmm(xt, theta)  # (E, S, N)
    ce = (torch.logsumexp(z, -1) - (z * y_onehot).sum(-1)).sum(-1)  # (E,)
    reg = 0.5 * (penalty[:, None] * theta.square()).sum((1, 2)) + 0.5 * theta[:, -1].sum(-1).square()
    return reg + c * ce, z.softmax(-1)


def gradient(theta, probs, xt, y_onehot, penalty, c):
    """(E, p, N) gradient of the objective."""
    grad = penalty[:, None] * theta + c * torch.bmm(xt.transpose(1, 2), probs - y_onehot)  # (E, p, N)
    grad[:, -1] += theta[:, -1].sum(-1, keepdim=True)  # gauge term on the intercepts
    return grad


def hessian(probs, xt, penalty, c):
    """Full Hessian (E, pN, pN), index a*N + n for theta[a, n]."""
    E, S, p = xt.shape
    N = probs.shape[-1]
    u = (xt.unsqueeze(-1) * probs.unsqueeze(2)).flatten(2)  # (E, S, p*N): x_ia p_in
    hess = -c * torch.bmm(u.transpose(1, 2), u)  # -C sum_i (x_ia p_in)(x_ib p_im)
    diag = c * torch.einsum("esa,esb,esn->eabn", xt, xt, probs)  # C sum_i x_ia x_ib p_in, (E, p, p, N)
    diag = diag + torch.diag_embed(penalty).unsqueeze(-1)
    blocks = hess.view(E, p, N, p, N)
    blocks.diagonal(dim1=2, dim2=4).add_(diag)  # (E, p, p, N) view: n == m
    blocks[:, -1, :, -1, :] += 1.0  # gauge: 0.5 (sum_n b_n)^2
    return hess


def hess_vec(v, probs, xt, penalty, c):
    """Hessian times v: v (E, p, N) -> (E, p, N), without forming the Hessian."""
    z = torch.bmm(xt, v)  # (E, S, N)
    pz = probs * z
    hz = pz - probs * pz.sum(-1, keepdim=True)  # (diag(p_i) - p_i p_i^T) z_i
    out = c * torch.bmm(xt.transpose(1, 2), hz) + penalty[:, None] * v
    out[:, -1] += v[:, -1].sum(-1, keepdim=True)
    return out


@contextlib.contextmanager
def one_thread_on_cpu(x: torch.Tensor):
    """MKL's batched Cholesky and QR on the CPU were 10-50x slower with 2 threads than with 1 on these small
    matrices, and erratic on a loaded machine (measured, BENCHMARKS.md): factorise single-threaded there."""
    threads = torch.get_num_threads()
    if x.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cholesky_direction(grad, hess):
    """Solve H d = grad per episode with the factorised Hessian: grad (E, p, N), hess (E, pN, pN)."""
    with one_thread_on_cpu(hess):
        factor = torch.linalg.cholesky(hess)
        return torch.cholesky_solve(grad.flatten(1).unsqueeze(-1), factor).view_as(grad)


def bound_factor(xt, penalty, c):
    """Cholesky factor (E, p, p) of D + (c / 2) Xt^T Xt, D = diag(penalty): the part of Boehning's bound on the
    Hessian (:func:`bound_solve`) that is not diagonal. Computed once per fit: the bound does not depend on theta."""
    gram = torch.bmm(xt.transpose(1, 2), xt)  # (E, p, p)
    gram.mul_(0.5 * c).diagonal(dim1=1, dim2=2).add_(penalty)
    with one_thread_on_cpu(gram):
        return torch.linalg.cholesky(gram)


def bound_solve(r, factor, penalty):
    """M^-1 r for Boehning's bound M >= H (Boehning 1992: diag(p) - p p^T <= (I - 11^T / N) / 2), r (E, p, N).

    M V = D V + e_p e_p^T V 11^T + (c / 2) G V J with J = I - 11^T / N, G = Xt^T Xt. The column-mean part
    V 11^T / N and the rest V J are invariant: on V J, M = D + (c / 2) G (the factor); on the mean part,
    M = D + N e_p e_p^T (diagonal, N on the intercepts). So M^-1 is one p x p triangular pair, not a pN system.
    """
    N = r.shape[-1]
    mean = r.mean(-1, keepdim=True)  # (E, p, 1): r 11^T / N is mean broadcast
    scale = penalty.clone()
    scale[-1] += N
    return torch.cholesky_solve(r - mean, factor) + mean / scale[:, None]


def cg_direction(grad, probs, xt, penalty, c, forcing, max_cg: int, factor=None):
    """Solve H d = grad per episode by preconditioned CG until ||r|| <= forcing * ||grad|| (E,); the
    preconditioner is Boehning's bound (``factor`` from :func:`bound_factor`) when given, else Jacobi."""
    if factor is None:
        jac = c * torch.einsum("esa,esn->ean", xt.square(), probs * (1 - probs)) + penalty[:, None]  # (E, p, N)
        jac[:, -1] += 1.0
        precondition = lambda v: v / jac  # noqa: E731
    else:
        precondition = lambda v: bound_solve(v, factor, penalty)  # noqa: E731
    d = torch.zeros_like(grad)
    r = grad.clone()
    zr = precondition(r)
    s = zr.clone()
    rz = (r * zr).sum((1, 2))  # (E,)
    target = (forcing * grad.flatten(1).norm(dim=-1)).square()  # (E,)
    for _ in range(max_cg):
        active = r.flatten(1).square().sum(-1) > target
        if not active.any():
            break
        hs = hess_vec(s, probs, xt, penalty, c)
        alpha = torch.where(active, rz / (s * hs).sum((1, 2)).clamp_min(1e-300), 0.0)[:, None, None]
        d += alpha * s
        r -= alpha * hs
        zr = precondition(r)
        rz_new = (r * zr).sum((1, 2))
        s = zr + (rz_new / rz.clamp_min(1e-300))[:, None, None] * s
        rz = rz_new
    return d


def newton(xt, y_onehot, penalty, c, solver: str, max_iter: int, rtol: float):
    """xt: (E, S, p), y_onehot: (S, N) -> theta (E, p, N) minimising the objective of every episode."""
    E, S, p = xt.shape
    theta = xt.new_zeros(E, p, y_onehot.shape[1])
    f, probs = objective(theta, xt, y_onehot, penalty, c)
    factor = bound_factor(xt, penalty, c) if solver == "pcg" else None
    for _ in range(max_iter):
        grad = gradient(theta, probs, xt, y_onehot, penalty, c)
        gnorm = grad.flatten(1).abs().amax(-1)  # (E,)
        if (gnorm <= rtol * f.abs().clamp_min(1.0)).all():
            break
        if solver == "cholesky":
            step = cholesky_direction(grad, hessian(probs, xt, penalty, c))
        else:
            forcing = grad.flatten(1).norm(dim=-1).sqrt().clamp(1e-6, 0.5)  # superlinear inexact Newton
            step = cg_direction(grad, probs, xt, penalty, c, forcing, max_cg=4 * p * y_onehot.shape[1], factor=factor)
        theta, f, probs = line_search(theta, step, f, grad, xt, y_onehot, penalty, c)
    return theta


def line_search(theta, step, f, grad, xt, y_onehot, penalty, c, tries: int = 30):
    """Per episode, the largest t in 1, 1/2, 1/4, ... with f(theta - t step) <= f - 1e-4 t grad.step; t = 1
    outright where grad.step is below the float64 resolution of f."""
    decrease = (grad * step).sum((1, 2))  # (E,)
    noise = 64 * EPS * f.abs().clamp_min(1.0)
    t = torch.ones_like(f)
    done = torch.zeros_like(f, dtype=torch.bool)
    new_theta, new_f = theta.clone(), f.clone()
    for _ in range(tries):
        cand = theta - t[:, None, None] * step
        cand_f, _ = objective(cand, xt, y_onehot, penalty, c)
        ok = ~done & ((cand_f <= f - 1e-4 * t * decrease) | ((decrease <= noise) & (t == 1)))
        new_theta[ok], new_f[ok] = cand[ok], cand_f[ok]
        done |= ok
        if done.all():
            break
        t = torch.where(done, t, t / 2)
    _, probs = objective(new_theta, xt, y_onehot, penalty, c)  # episodes without progress keep theta
    return new_theta, new_f, probs
