"""Stage e, precision: the evaluation split's features in bf16 autocast (the library's default on
CUDA) and in true fp32 (TF32 off for matrix products and convolutions), on the same 2,000 episodes:
how many per-episode ProtoNet accuracies differ, and by how much the mean moves.
"""

from __future__ import annotations

import numpy as np
import torch

from fewshot_cam.bench._api import evaluate_episodes, extract_features, to_float
from fewshot_cam.bench.context import Context
from fewshot_cam.bench.data import SHOTS, eval_episodes, eval_split, random_model


def fp32_features(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Pooled features (N, D) in float32 with TF32 off: the reference for the bf16 default."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            parts = [
                model.embed(to_float(images[i : i + batch_size], device)) for i in range(0, len(images), batch_size)
            ]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    return torch.cat(parts).float()  # (N, D)


def run(ctx: Context) -> None:
    s = ctx.sizes
    split = eval_split(ctx)
    indices = eval_episodes(split, s.episodes)[: s.method_episodes]
    model = random_model(ctx)
    used = torch.unique(indices)
    images = split.images[used.numpy()]
    local = torch.searchsorted(used, indices)  # (E, N, K+Q) into ``images``
    bf16, t_bf16 = ctx.timed(extract_features, model, images)
    fp32, t_fp32 = ctx.timed(fp32_features, model, images)
    a = evaluate_episodes(bf16, local, SHOTS, ["protonet"])["protonet"]
    b = evaluate_episodes(fp32, local, SHOTS, ["protonet"])["protonet"]
    differ = np.abs(a - b) > 1e-9
    ctx.put("episodes", len(indices))
    ctx.put("images", len(images))
    ctx.put("bf16_features_s", round(t_bf16, 3))
    ctx.put("fp32_features_s", round(t_fp32, 3))
    ctx.put("feature_rel_error", float((bf16 - fp32).norm() / fp32.norm()))
    ctx.put("episodes_differ", int(differ.sum()))
    ctx.put("max_episode_diff_points", float(np.abs(a - b).max()))
    ctx.put("mean_acc_bf16", round(float(a.mean()), 3))
    ctx.put("mean_acc_fp32", round(float(b.mean()), 3))
    ctx.put("mean_shift_points", round(float(a.mean() - b.mean()), 3))
    ctx.put("note", "on the CPU both are fp32 (autocast is CUDA-only), so 0 differ there")
