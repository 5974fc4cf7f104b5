"""Background reliance: few-shot accuracy of the same frozen episodes under the conditions of
:mod:`fewshot_cam.analysis.conditions` (original, foreground only, background only, tiled background,
the foreground on another image's background of the same class or of another class).

``modify="queries"`` (the default) changes only the query images, the support set stays original: a
fixed classifier facing changed test images, as in Xiao et al. (ICLR 2021); ``modify="all"`` changes
supports and queries alike. Each condition builds its images in batches on the model's device, from
uint8, and embeds them once: the distinct (image, background donor) pairs the episodes use (one per
image for the first four conditions, one per modified slot for the mixed ones). Every episode is then
scored batched on those features, keeping each query's predicted episode class, from which come the
accuracy and, for ``mixed-rand``, the share of queries predicted as the class their background came
from (the background-following rate). See :mod:`fewshot_cam.analysis.reliance` for the indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fewshot_cam.analysis.attribution import attribute_images, classifier_scorer
from fewshot_cam.analysis.conditions import CONDITIONS
from fewshot_cam.analysis.fills import DEFAULT_FILL, model_mean
from fewshot_cam.errors import UserError
from fewshot_cam.fewshot.episodic import check_methods, method_scores
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.models.features import extract_features, model_device
from fewshot_cam.progress import progress as progress_bar

MODIFY = ("queries", "all")


@dataclass(frozen=True)
class Swaps:
    """Background donors of the mixed conditions, in the compacted image rows (see :func:`compact`):
    ``rows`` condition -> (E, N, K+Q) donor image of each slot; ``target`` condition -> (E, N, K+Q) the
    episode row (class) of that donor."""

    rows: dict[str, torch.Tensor]
    target: dict[str, torch.Tensor]


def compact(indices: torch.Tensor, *more: torch.Tensor) -> tuple[np.ndarray, list[torch.Tensor]]:
    """The images used by ``indices`` (E, N, K+Q) and any ``more`` index tensors: (rows (U,) into the
    split, each tensor rewritten into rows)."""
    used, local = torch.unique(torch.stack([indices, *more]), return_inverse=True)
    return used.numpy(), list(local)


def attribution_masks(mask_model: FewShotClassifier, images: np.ndarray, method: str, threshold: float = 0.5,
                      batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """Foreground masks (N, H, W) bool on the mask model's device: the ``method`` map (normalised to
    [0, 1]) of the mask model's top-1 base class, >= ``threshold``. images: (N, H, W, 3) uint8."""
    was_training = mask_model.training
    mask_model.eval()
    try:
        scorer = classifier_scorer(mask_model)
        maps = attribute_images(
            method, scorer, images, model_device(mask_model), batch_size=batch_size, progress=progress
        )
    finally:
        mask_model.train(was_training)
    return maps >= threshold


def condition_features(model: FewShotClassifier, images: np.ndarray, masks: torch.Tensor, pairs: torch.Tensor,
                       condition: str, fill: str, batch_size: int = 256) -> torch.Tensor:
    """Pooled features (P, D) of the ``condition`` images of ``pairs`` (P, 2): (image, background donor)
    rows into images (U, H, W, 3) uint8 and masks (U, H, W) bool, built ``batch_size`` at a time on the
    model's device."""
    device, build = model_device(model), CONDITIONS.get(condition).build
    mean, out = model_mean(model), []
    for start in range(0, len(pairs), batch_size):
        fg, bg = pairs[start : start + batch_size].T.numpy()
        batch = [torch.as_tensor(a).to(device) for a in (images[fg], masks[fg], images[bg], masks[bg])]
        out.append(extract_features(model, build(*batch, fill, mean), batch_size))
    return torch.cat(out)


def _changed(shape: tuple[int, int, int], shots: int, modify: str) -> torch.Tensor:
    """(E, N, K+Q) bool: the slots a condition changes."""
    changed = torch.ones(shape, dtype=torch.bool)
    if modify == "queries":
        changed[:, :, :shots] = False
    return changed


def predictions(slots: torch.Tensor, shots: int, methods: list[str], first: int, seed: int) -> dict[str, torch.Tensor]:
    """slots: (E, N, K+Q, D) features of a chunk of episodes numbered from ``first`` -> {method: (E, N*Q)
    predicted episode class of each query, class-major}. The methods and seeds are ``evaluate_episodes``'."""
    E, N, KQ, D = slots.shape
    support, query = slots[:, :, :shots], slots[:, :, shots:].reshape(E, N * (KQ - shots), D)
    return {m: scores.argmax(-1) for m, scores in method_scores(support, query, methods, first, seed).items()}


def _episode_scores(feats: torch.Tensor, where: torch.Tensor, original: torch.Tensor, indices: torch.Tensor,
                    shots: int, methods: list[str], seed: int, target: torch.Tensor | None,
                    episode_batch: int) -> dict[str, dict[str, np.ndarray]]:
    """Accuracy (E,) % and, given ``target`` (E, N, K+Q), the share (E,) % of queries predicted as the
    target row. Slot (e, n, j) takes ``feats[where[e, n, j]]``, or ``original[indices[e, n, j]]`` where -1."""
    E, N, KQ = indices.shape
    labels = torch.arange(N, device=feats.device).repeat_interleave(KQ - shots)  # (N*Q,) class-major
    out: dict[str, dict[str, list]] = {m: {"accuracy": [], "following": []} for m in methods}
    for start in range(0, E, episode_batch):
        sl = slice(start, start + episode_batch)
        w = where[sl].to(feats.device)
        slots = torch.where((w >= 0)[..., None], feats[w.clamp(min=0)], original[indices[sl].to(feats.device)])
        for m, pred in predictions(slots, shots, methods, start, seed).items():  # pred: (e, N*Q)
            out[m]["accuracy"].append((pred == labels).double().mean(-1) * 100)
            if target is not None:
                tgt = target[sl][:, :, shots:].reshape(pred.shape).to(pred.device)
                out[m]["following"].append((pred == tgt).double().mean(-1) * 100)
    return {m: {k: torch.cat(v).cpu().numpy() for k, v in r.items() if v} for m, r in out.items()}


def condition_pairs(condition: str, indices: torch.Tensor, swaps: Swaps | None, shots: int,
                    modify: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct (image, background donor) pairs (P, 2) a condition embeds, and ``where`` (E, N, K+Q):
    each slot's pair, -1 for a slot the condition leaves original."""
    E, N, KQ = indices.shape
    where = torch.full((E, N, KQ), -1, dtype=torch.long)
    if condition == "original":
        return torch.zeros(0, 2, dtype=torch.long), where
    donor = CONDITIONS.get(condition).donor
    if donor is not None and (swaps is None or condition not in swaps.rows):
        raise ValueError(f"condition {condition} needs background donors (swaps)")
    donors = swaps.rows[condition] if donor is not None else indices
    changed = _changed((E, N, KQ), shots, modify)
    pairs, slot_pair = torch.unique(torch.stack([indices[changed], donors[changed]], 1), dim=0, return_inverse=True)
    where[changed] = slot_pair
    return pairs, where


def run_ablation(model: FewShotClassifier, images: np.ndarray, masks: torch.Tensor, indices: torch.Tensor,
                 shots: int, methods: list[str], conditions: list[str], swaps: Swaps | None = None,
                 fill: str = DEFAULT_FILL, modify: str = "queries", batch_size: int = 256, episode_batch: int = 500,
                 seed: int = 0, progress: bool = False) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{condition: {method: {"accuracy": (E,) %, "following": (E,) % (mixed-rand only)}}}``.

    images: (U, H, W, 3) uint8; masks: (U, H, W) bool foreground (already dilated); indices: (E, N, K+Q)
    episodes into ``images``; swaps: the donors of the mixed conditions (required when they run).
    """
    methods = check_methods(methods)
    if modify not in MODIFY:
        raise UserError(f"unknown --modify {modify!r} (valid: {', '.join(MODIFY)})")
    identity = torch.arange(len(images)).repeat(2, 1).T  # (U, 2): every image with its own background
    original = condition_features(model, images, masks, identity, "original", fill, batch_size)  # (U, D)
    results = {}
    for condition in progress_bar(conditions, desc="conditions", enabled=progress, unit="condition"):
        donor = CONDITIONS.get(condition).donor
        pairs, where = condition_pairs(condition, indices, swaps, shots, modify)
        feats = condition_features(model, images, masks, pairs, condition, fill, batch_size) if len(pairs) else original
        target = swaps.target[condition] if donor == "other" else None
        results[condition] = _episode_scores(
            feats, where, original, indices, shots, methods, seed, target, episode_batch
        )
    return results
