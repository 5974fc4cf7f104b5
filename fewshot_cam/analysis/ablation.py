"""Background reliance: few-shot accuracy on original, foreground-only and background-only images.

The same frozen episodes are evaluated three times: on the original images, with the background
filled (foreground only) and with the foreground filled (background only). A model that classifies
by the object loses little on "foreground" and drops to chance on "background"; one that leans on a
background shortcut does the opposite. The background-reliance index

    BRI = (acc_background - chance) / (acc_original - chance),   chance = 100 / ways

is 0 when the background alone gives chance accuracy and 1 when it gives all of the original accuracy.
Images are filled in batches on the model's device (never in place), the features of the images the
episodes use are extracted once per condition, and all episodes then run batched on those features.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import numpy as np
import torch
import torchvision.transforms.functional as TF

from fewshot_cam.analysis.attribution import attribute_images, classifier_scorer
from fewshot_cam.evaluation.paired import compare_paired
from fewshot_cam.evaluation.results import MethodResult
from fewshot_cam.fewshot.episodic import evaluate_episodes
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.models.features import extract_features, model_device
from fewshot_cam.progress import progress as progress_bar
from fewshot_cam.registry import Registry

# condition(masks (B, H, W) bool) -> the pixels kept (B, H, W) bool, or None for all of them
CONDITIONS: Registry[Callable[[torch.Tensor], torch.Tensor | None]] = Registry("condition")
CONDITIONS.register("original", lambda masks: None, help="the image as it is")
CONDITIONS.register("foreground", lambda masks: masks, help="only the foreground kept")
CONDITIONS.register("background", lambda masks: ~masks, help="only the background kept")

# fill(x (B, 3, H, W) float) -> what replaces removed pixels (B, 3, H, W)
FILLS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("fill")


@FILLS.register("mean", help="each image's mean colour")
def mean_fill(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x)


@FILLS.register("black", help="black")
def black_fill(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


@FILLS.register("blur", help="a heavy Gaussian blur (keeps the colours, removes shapes and texture)")
def blur_fill(x: torch.Tensor) -> torch.Tensor:
    """The largest odd kernel below the image size and sigma = size / 6."""
    size = min(x.shape[-2:])
    kernel = size - 1 if size % 2 == 0 else size - 2
    return TF.gaussian_blur(x, kernel_size=max(kernel, 1), sigma=max(size / 6.0, 0.1))


def filler(x: torch.Tensor, fill: str) -> torch.Tensor:
    """What replaces removed pixels (the fill named ``fill`` of :data:`FILLS`). x: (B, 3, H, W) float."""
    return FILLS.get(fill)(x)


def apply_condition(images: torch.Tensor, masks: torch.Tensor, condition: str, fill: str) -> torch.Tensor:
    """A new uint8 batch (B, H, W, 3): ``images`` (B, H, W, 3) uint8 with the pixels outside the kept
    region replaced by ``filler``. masks: (B, H, W) bool foreground at image resolution.

    "original" keeps everything, "foreground" keeps ``masks``, "background" keeps ``~masks``.
    """
    kept = CONDITIONS.get(condition)
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}")
    keep = kept(masks)  # (B, H, W) or None
    if keep is None:
        return images.clone()
    x = images.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    fill_img = filler(x, fill).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # (B, H, W, 3)
    return torch.where(keep[..., None], images, fill_img)


def condition_features(
    model: FewShotClassifier,
    images: np.ndarray,
    masks: np.ndarray | torch.Tensor,
    condition: str,
    fill: str,
    batch_size: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """Pooled features (N, D) of ``images`` (N, H, W, 3) uint8 under ``condition``, filled ``batch_size``
    images at a time on the model's device; masks: (N, H, W) bool."""
    device = model_device(model)
    out = []
    for start in progress_bar(range(0, len(images), batch_size), desc=condition, enabled=progress):
        chunk = torch.as_tensor(images[start : start + batch_size]).to(device)  # (b, H, W, 3) uint8
        keep = torch.as_tensor(masks[start : start + batch_size]).to(device)  # (b, H, W) bool
        out.append(extract_features(model, apply_condition(chunk, keep, condition, fill), batch_size))
    return torch.cat(out)


def attribution_masks(
    mask_model: FewShotClassifier,
    images: np.ndarray,
    method: str,
    threshold: float = 0.5,
    batch_size: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """Foreground masks (N, H, W) bool on the mask model's device: the ``method`` map (normalised to
    [0, 1]) of the mask model's top-1 base class, >= ``threshold``. images: (N, H, W, 3) uint8."""
    was_training = mask_model.training
    mask_model.eval()
    try:
        scorer = classifier_scorer(mask_model)
        maps = attribute_images(method, scorer, images, model_device(mask_model), batch_size=batch_size,
                                progress=progress)
    finally:
        mask_model.train(was_training)
    return maps >= threshold


def compact(indices: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """The images episodes use: (rows (U,) into the split, indices (E, N, K+Q) rewritten into rows)."""
    used, local = torch.unique(indices, return_inverse=True)
    return used.numpy(), local


def run_ablation(
    model: FewShotClassifier,
    images: np.ndarray,
    masks: np.ndarray | torch.Tensor,
    indices: torch.Tensor,
    shots: int,
    methods: list[str],
    fill: str = "mean",
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """Per-episode accuracies (percent) ``{condition: {method: (E,)}}``.

    images: (U, H, W, 3) uint8; masks: (U, H, W) bool; indices: (E, N, K+Q) episodes into ``images``
    (see :func:`compact` to keep only the images a split's episodes use). Each condition fills and
    embeds every image once; ``evaluate_episodes`` then runs all episodes batched on those features.
    """
    results = {}
    for condition in CONDITIONS:
        features = condition_features(model, images, masks, condition, fill, batch_size, progress)  # (U, D)
        results[condition] = evaluate_episodes(features, indices, shots, methods, seed=seed, progress=progress)
    return results


def reliance_index(acc_background: float, acc_original: float, ways: int) -> float | None:
    """BRI = (acc_bg - chance) / (acc_orig - chance), chance = 100 / ways; None when acc_orig == chance."""
    chance = 100.0 / ways
    if abs(acc_original - chance) < 1e-9:
        return None
    return (acc_background - chance) / (acc_original - chance)


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def _difference(method: str, a: np.ndarray, b: np.ndarray) -> dict:
    """Paired a - b over the same episodes (``evaluation.paired.compare_paired``), JSON-ready."""
    p = compare_paired(a, b)
    return {"method": method, "mean": p.mean_diff, "ci95": p.ci95,
            "t_pvalue": _finite(p.t_pvalue), "wilcoxon_pvalue": _finite(p.wilcoxon_pvalue)}


def summarize(results: dict[str, dict[str, np.ndarray]], ways: int) -> dict:
    """JSON-ready ``conditions`` (condition -> [{method, mean, ci95, per_episode}]), ``differences``
    (paired over the episodes, "foreground-original" and "background-original": mean difference +- 95% CI,
    t-test and Wilcoxon p-values) and ``reliance`` (method -> BRI of the mean accuracies)."""
    methods = list(results["original"])
    conditions = {c: [asdict(MethodResult.from_accuracies(m, results[c][m])) for m in methods] for c in CONDITIONS}
    differences = {
        f"{c}-original": [_difference(m, results[c][m], results["original"][m]) for m in methods]
        for c in CONDITIONS.names()[1:]
    }
    means = {c: {m: float(np.mean(results[c][m])) for m in methods} for c in CONDITIONS}
    reliance = {m: reliance_index(means["background"][m], means["original"][m], ways) for m in methods}
    return {"conditions": conditions, "differences": differences, "reliance": reliance}
