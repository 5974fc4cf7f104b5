"""Few-shot evaluation of frozen features over many episodes, batched.

Features of every image are computed once; an episode is then only indices into them. Episodes run
in chunks sized from a memory budget of the features' device (:func:`chunk_size`) as tensor operations;
each method scores the queries of a whole chunk at once. The few-shot methods are the registry
:data:`METHODS`: a new method is one function
``(support (E, N, K, D), query (E, M, D), seeds) -> scores (E, M, N)`` and one entry.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fewshot_cam.errors import UserError
from fewshot_cam.fewshot.finetune import baseline, baseline_pp
from fewshot_cam.fewshot.logreg import logreg
from fewshot_cam.fewshot.protonet import protonet, protonet_cosine
from fewshot_cam.progress import progress as progress_bar
from fewshot_cam.registry import Registry

# method(support (E, N, K, D), query (E, M, D), per-episode seeds) -> scores (E, M, N)
Method = Callable[[torch.Tensor, torch.Tensor, Sequence[int]], torch.Tensor]

METHODS: Registry[Method] = Registry("method")
METHODS.register("protonet", protonet, help="nearest prototype, squared Euclidean (Snell et al. 2017)")
METHODS.register("protonet-cosine", protonet_cosine, help="nearest prototype, cosine (Meta-Baseline)")
METHODS.register("baseline", baseline, help="linear classifier fine-tuned on the support (Chen et al. 2019)")
METHODS.register("baseline++", baseline_pp, help="cosine classifier fine-tuned on the support (Chen et al. 2019)")
METHODS.register("logreg", logreg, help="L2-normalised logistic regression (Tian et al. 2020)")
METHODS.register("cosine-finetune", baseline_pp,
                 help="Baseline++'s classifier on features not pretrained with it (see evaluation/run.py)")

DEFAULT_METHODS = ("protonet", "baseline", "baseline++", "logreg")

SEEDED = frozenset({"baseline", "baseline++", "cosine-finetune"})
"""Methods that draw random numbers (from per-episode seeds); the others ignore ``seeds``."""

FROM_MEANS = frozenset({"protonet", "protonet-cosine"})
"""Methods that read the support only through its class means: run alone, they get the means (E, N, 1, D),
summed by row index without gathering the support (:func:`gather_episodes`)."""


def check_methods(methods: Sequence[str] | str) -> list[str]:
    """Method names (a list or "a,b,c") -> a list; an unknown one raises UserError listing the valid ones."""
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    names = [m for m in names if m]
    if not names:
        raise UserError(f"no method given; choose from {', '.join(METHODS)}")
    for name in names:
        METHODS.get(name)
    return names


def episode_seeds(seed: int, episode_ids: Sequence[int]) -> list[int]:
    """One 32-bit seed per episode from (seed, episode index): independent of how episodes are chunked."""
    return [int(np.random.SeedSequence([seed, int(e)]).generate_state(1)[0]) for e in episode_ids]


def episode_accuracy(scores: torch.Tensor, queries: int) -> torch.Tensor:
    """scores: (E, N*Q, N), queries class-major -> accuracy in percent (E,) float64."""
    E, M, N = scores.shape
    labels = torch.arange(N, device=scores.device).repeat_interleave(queries)  # (N*Q,)
    return (scores.argmax(-1) == labels).sum(-1).double() * 100.0 / M


def gather_episodes(
    features: torch.Tensor, indices: torch.Tensor, shots: int, buffers: dict[str, torch.Tensor] | None = None,
    support_means: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The support (E, N, K, D) and class-major query (E, N*Q, D) features of episodes ``indices``
    (E, N, K+Q) into ``features`` (N_images, D), each gathered by one row ``index_select`` straight into
    its layout. (Gathering (E, N, K+Q, D) first and slicing it made the query a second copy and held twice
    the memory: ProtoNet was then only 1.2-1.3x a per-episode loop; BENCHMARKS.md.)

    ``support_means``: the support is its class means instead, (E, N, 1, D), by ``embedding_bag`` (the rows
    summed by index, never gathered: at 20-way 20-shot 12 against 43 us an episode); float32/64 only,
    other dtypes are gathered and averaged in float32.

    ``buffers`` (a dict the caller keeps across chunks) makes the gathers write into the same memory each
    time: a fresh allocation of a few MB is a fresh mapping on the CPU, and its page faults cost 10% of
    ProtoNet's time at 20 ways. The views returned are then valid only until the next call.
    """
    E, N, KQ = indices.shape
    idx = indices.to(features.device)
    if support_means and features.dtype in (torch.float32, torch.float64):
        support = F.embedding_bag(idx[:, :, :shots].reshape(E * N, shots), features, mode="mean").view(E, N, 1, -1)
    else:
        support = _take(features, idx[:, :, :shots], "support", buffers).view(E, N, shots, -1)
        if support_means:
            support = support.float().mean(2, keepdim=True)
    query = _take(features, idx[:, :, shots:], "query", buffers).view(E, N * (KQ - shots), -1)
    return support, query


def _take(features: torch.Tensor, idx: torch.Tensor, name: str, buffers: dict[str, torch.Tensor] | None):
    flat = idx.reshape(-1)
    if buffers is None or features.requires_grad:
        return features.index_select(0, flat)
    buf = buffers.get(name)
    if buf is None or len(buf) < len(flat) or buf.dtype != features.dtype or buf.device != features.device:
        buf = buffers[name] = features.new_empty(len(flat), features.shape[1])
    return torch.index_select(features, 0, flat, out=buf[: len(flat)])


def method_scores(
    support: torch.Tensor, query: torch.Tensor, methods: Sequence[str], first: int, seed: int
) -> dict[str, torch.Tensor]:
    """{method: scores (E, M, N)} of a chunk of episodes numbered ``first`` .. ``first + E - 1`` (their
    numbers seed the fitted methods). support: (E, N, K, D), query: (E, M, D)."""
    E = support.shape[0]
    seeds = episode_seeds(seed, range(first, first + E)) if SEEDED.intersection(methods) else None
    return {m: METHODS.get(m)(support, query, seeds) for m in methods}


def evaluate_chunk(
    features: torch.Tensor, indices: torch.Tensor, first: int, shots: int, methods: list[str], seed: int,
    buffers: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One chunk of episodes at once: {method: (E,) accuracy in percent}.

    features: (N_images, D); indices: (E, N, K+Q) into ``features``, the episodes numbered ``first`` ..
    ``first + E - 1`` of the whole set (their numbers seed the fitted methods). ``buffers``: see
    :func:`gather_episodes`.
    """
    support, query = gather_episodes(features, indices, shots, buffers, support_means=set(methods) <= FROM_MEANS)
    queries = indices.shape[2] - shots
    return {m: episode_accuracy(s, queries) for m, s in method_scores(support, query, methods, first, seed).items()}


CPU_BUDGET = 8 * 2**20
"""Bytes a chunk's inner loop may revisit on a CPU (:func:`hot_bytes`): about a last-level cache, so what the
maths rereads stays in cache (a 500-episode ProtoNet chunk was 2x slower than a per-episode loop,
memory-bound; BENCHMARKS.md)."""

CPU_MEMORY_BUDGET = 2**30
"""Bytes a chunk may hold in all on a CPU (:func:`episode_bytes`): the bound for the fine-tuned classifiers,
whose inner loop rereads only their weights, so that their chunks can be large."""

GPU_FRACTION = 0.25
"""Fraction of the accelerator's free memory a chunk may use (both budgets)."""


def memory_budget(device: torch.device) -> tuple[int, int]:
    """(hot, total) bytes one chunk of episodes may use on ``device`` (the features' device, never chosen
    here): what its inner loop revisits, and all it holds."""
    if device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0] * GPU_FRACTION)
        return free, free
    return CPU_BUDGET, CPU_MEMORY_BUDGET


def _gathered_bytes(n_way: int, per_class: int, shots: int, dim: int) -> int:
    """One episode's gathered rows and scores (float32), bytes."""
    return 4 * n_way * per_class * dim + 4 * n_way * n_way * (per_class - shots)


def _newton_bytes(n_way: int, shots: int, dim: int) -> int:
    """The tensors logistic regression's Newton loop (its default solver, "pcg") rereads for one episode
    (float64), bytes: Xt (S, p), the bound's factor (p, p) and the CG vectors
    (:mod:`fewshot_cam.fewshot.logreg_newton`)."""
    support = n_way * shots
    p = min(support, dim) + 1
    return 8 * (support * p + p * p + 6 * support * n_way + 12 * p * n_way)


def _finetune_bytes(n_way: int, dim: int) -> int:
    """The fine-tuned classifiers' weights, gradients and momentum buffers and one mini-batch of 4, bytes."""
    return 4 * (3 * n_way * (dim + 1) + 4 * (dim + n_way))


def episode_bytes(n_way: int, per_class: int, shots: int, dim: int, methods: Sequence[str]) -> int:
    """All the memory one episode holds, bytes: its gathered rows and scores, and the largest method's own
    tensors (logistic regression's float64 unit features, span basis and Newton loop; the fine-tuning's
    float32 support and optimiser state)."""
    support, own = n_way * shots, [0]
    if "logreg" in methods:
        own.append(8 * (support * dim + (min(support, dim) + 1) * dim) + _newton_bytes(n_way, shots, dim))
    if SEEDED.intersection(methods):
        own.append(4 * support * dim + 2 * _finetune_bytes(n_way, dim))
    return _gathered_bytes(n_way, per_class, shots, dim) + max(own)


def hot_bytes(n_way: int, per_class: int, shots: int, dim: int, methods: Sequence[str]) -> int:
    """The memory of one episode that a method's inner loop rereads, bytes (the largest over ``methods``):
    ProtoNet's class means and gathered queries (written, then read by the product); logistic regression's
    Newton loop (its unit features and span basis are read once); the fine-tuned classifiers' weights and
    optimiser state, since each of their 100 x S/4 steps reads only 4 support rows (at 20-way 10-shot,
    chunks of 25, 64 and 256 episodes took 116, 64 and 107 ms an episode)."""
    hot = [0]
    if set(methods) <= FROM_MEANS:  # alone, they get the class means and the gathered queries
        hot.append(_gathered_bytes(n_way, per_class - shots + 1, 1, dim))
    elif FROM_MEANS.intersection(methods):  # with others, the whole support is gathered (evaluate_chunk)
        hot.append(_gathered_bytes(n_way, per_class, shots, dim))
    if "logreg" in methods:
        hot.append(_newton_bytes(n_way, shots, dim))
    if SEEDED.intersection(methods):
        hot.append(_finetune_bytes(n_way, dim))
    return max(hot)


def chunk_size(features: torch.Tensor, indices: torch.Tensor, shots: int, methods: Sequence[str],
               batch_size: int, budget: tuple[int, int] | None = None) -> int:
    """Episodes per chunk: as many as the (hot, total) ``budget`` bytes (default :func:`memory_budget` of the
    features' device) hold by :func:`hot_bytes` and :func:`episode_bytes`, at least 1, at most
    ``batch_size``. Results do not depend on it (per-episode maths)."""
    hot, total = memory_budget(features.device) if budget is None else budget
    E, N, KQ = indices.shape
    shape = (N, KQ, shots, features.shape[1], methods)
    return max(1, min(batch_size, hot // hot_bytes(*shape), total // episode_bytes(*shape)))


def chunks(features: torch.Tensor, indices: torch.Tensor, shots: int, methods: Sequence[str],
           batch_size: int) -> list[tuple[str, int, int]]:
    """(method, first, stop) for every chunk: each method runs in chunks of its own size
    (:func:`chunk_size`), since ProtoNet wants cache-sized chunks and fine-tuning as large as memory allows."""
    out = []
    for m in methods:
        size = chunk_size(features, indices, shots, [m], batch_size)
        out += [(m, start, min(start + size, len(indices))) for start in range(0, len(indices), size)]
    return out


def _check(features: torch.Tensor, indices: torch.Tensor, shots: int, batch_size: int) -> None:
    if batch_size < 1:
        raise UserError(f"episode batch size must be >= 1, got {batch_size}")
    if features.ndim != 2 or indices.ndim != 3:
        shapes = f"{tuple(features.shape)}, {tuple(indices.shape)}"
        raise ValueError(f"features must be (N, D) and indices (E, N, K+Q), got {shapes}")
    if not 0 < shots < indices.shape[2]:
        raise UserError(f"shots={shots} leaves no query in episodes of {indices.shape[2]} images per class")


def score_episodes(
    features: torch.Tensor,
    indices: torch.Tensor,
    shots: int,
    methods: Sequence[str] = DEFAULT_METHODS,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = False,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(method, scores (e, N*Q, N)) for each chunk of :func:`chunks`, in episode order within a method.
    The views it gathers are reused: each chunk's scores are new tensors, its inputs are not kept."""
    methods = check_methods(methods)
    _check(features, indices, shots, batch_size)
    buffers: dict[str, torch.Tensor] = {}
    parts = chunks(features, indices, shots, methods, batch_size)
    for m, start, stop in progress_bar(parts, desc="episodes", enabled=progress, unit="chunk"):
        support, query = gather_episodes(features, indices[start:stop], shots, buffers, support_means=m in FROM_MEANS)
        yield m, method_scores(support, query, [m], start, seed)[m]


def evaluate_episodes(
    features: torch.Tensor,
    indices: torch.Tensor,
    shots: int,
    methods: Sequence[str] = DEFAULT_METHODS,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-episode accuracy (percent, (E,) float64) of every method, episodes batched at most ``batch_size``
    at a time (fewer when :func:`chunk_size`'s memory budgets for the features' device say so), each method
    in chunks of its own size.

    features: (N_images, D) on any device; indices: (E, N, K+Q) LongTensor into ``features`` (the first
    ``shots`` of the last dim are support, the rest queries; class n is episode label n). ``seed`` seeds the
    fitted methods, per episode index, so the result does not depend on ``batch_size``.
    """
    out: dict[str, list[torch.Tensor]] = {m: [] for m in check_methods(methods)}
    for m, scores in score_episodes(features, indices, shots, methods, batch_size, seed, progress):
        out[m].append(episode_accuracy(scores, indices.shape[2] - shots))
    return {m: torch.cat(accs).cpu().numpy() for m, accs in out.items()}


def predict_episodes(
    features: torch.Tensor,
    indices: torch.Tensor,
    shots: int,
    methods: Sequence[str] = DEFAULT_METHODS,
    batch_size: int = 500,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """{method: (E, N*Q) long} the predicted episode class of every query (class-major, on the features'
    device), by the same chunks, maths and seeds as :func:`evaluate_episodes`."""
    out: dict[str, list[torch.Tensor]] = {m: [] for m in check_methods(methods)}
    for m, scores in score_episodes(features, indices, shots, methods, batch_size, seed):
        out[m].append(scores.argmax(-1))
    return {m: torch.cat(p) for m, p in out.items()}
