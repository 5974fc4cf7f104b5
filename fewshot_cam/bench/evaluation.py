"""Stage c, evaluation: 10,000 5-way 1-shot 15-query ProtoNet episodes on a 20 x 600 split at 84 px,
feature extraction included (target < 10 s on one H100/H200); logreg, Baseline and Baseline++ on
the first 2,000 of those episodes. The library's defaults: features 256 images per pass, episodes
500 at a time, as ``fewshot-cam eval`` runs them. Then issue 15's peer line on the device: batched ProtoNet
against a plain per-episode torch loop (:func:`plain_protonet_loop`) on the same features and episodes,
with the number of episodes whose predictions differ.
"""

from __future__ import annotations

import numpy as np
import torch

from fewshot_cam.bench._api import evaluate_episodes, extract_features, predict_episodes
from fewshot_cam.bench.context import Context
from fewshot_cam.bench.data import SHOTS, eval_episodes, eval_split, random_model

FITTED = ("logreg", "baseline", "baseline++")
LOOP_EPISODES = 1000


def plain_protonet_loop(features: torch.Tensor, indices: torch.Tensor, shots: int) -> torch.Tensor:
    """The per-episode loop a user would write (Snell et al. 2017: nearest class mean, Euclidean): features
    (I, D), indices (E, N, K+Q) -> predicted class (E, N*Q) of each query, class-major. The peer of issue 15's
    benchmark (``scripts/bench_peers.py`` times it on the CPU)."""
    out = []
    for episode in indices:
        support, query = features[episode[:, :shots]], features[episode[:, shots:]].reshape(-1, features.shape[1])
        out.append(torch.cdist(query, support.mean(1)).argmin(1))
    return torch.stack(out)


def run(ctx: Context) -> None:
    s = ctx.sizes
    split, seconds = ctx.timed(eval_split, ctx)
    ctx.put("split", f"{len(split.images)} images, {s.classes} classes x {s.per_class} at {s.image_size} px")
    ctx.put("draw_s", round(seconds, 2))
    model = random_model(ctx)
    indices = eval_episodes(split, s.episodes)
    extract_features(model, split.images[:512])  # warm-up: allocator, cuDNN autotuning
    features, t_features = ctx.timed(extract_features, model, split.images)
    accuracies, t_episodes = ctx.timed(evaluate_episodes, features, indices, SHOTS, ["protonet"])
    total = t_features + t_episodes
    ctx.put("protonet", {
        "episodes": len(indices), "features_s": round(t_features, 3), "episodes_s": round(t_episodes, 3),
        "total_s": round(total, 3), "target_s": 10, "meets_target": total < 10,
        "feature_images_per_s": round(len(split.images) / t_features, 1),
        "mean_acc_random_weights": round(float(np.mean(accuracies["protonet"])), 2),
    })
    loop_idx = indices[:LOOP_EPISODES].to(features.device)
    ours, t_ours = ctx.timed(predict_episodes, features, loop_idx, SHOTS, ["protonet"])
    loop, t_loop = ctx.timed(plain_protonet_loop, features, loop_idx, SHOTS)
    ctx.put("protonet_vs_plain_loop", {
        "episodes": len(loop_idx), "ours_us_per_episode": round(t_ours / len(loop_idx) * 1e6, 1),
        "loop_us_per_episode": round(t_loop / len(loop_idx) * 1e6, 1), "ratio": round(t_loop / t_ours, 2),
        "target_ratio": 2, "episodes_differing": int((ours["protonet"] != loop).any(-1).sum()),
    })
    _, t_big = ctx.timed(extract_features, model, split.images, batch_size=1024)
    ctx.put("features_batch_1024_s", round(t_big, 3))
    head = indices[: s.method_episodes]
    for method in FITTED:
        accuracies, seconds = ctx.timed(evaluate_episodes, features, head, SHOTS, [method])
        ctx.put(method, {"episodes": len(head), "seconds": round(seconds, 3),
                         "episodes_per_s": round(len(head) / seconds, 1),
                         "mean_acc_random_weights": round(float(np.mean(accuracies[method])), 2)})
