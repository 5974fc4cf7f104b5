"""Batched few-shot evaluation vs a per-episode loop, on the same episodes, in one run.

Batched: the features of every image of the split are computed once (``extract_features``), then all
episodes are scored as tensor operations (``evaluate_episodes``). Loop: the style of learn2learn's
``TaskDataset`` pipelines, one episode at a time, each forwarding its own N*(K+Q) images (80 for
5-way 1-shot 15-query) and scoring them with the same maths (``evaluate_chunk``). The loop's cost per
episode is constant, so it is timed on ``--loop-episodes`` episodes and scaled to all of them.

Forward passes bound the speed-up: the loop forwards E*N*(K+Q) images, batched only the split's
n_images, so ratio <= E*N*(K+Q)/n_images (E/150 for 5-way 1-shot on 12,000 images).

    python scripts/bench_eval.py --episodes 10000 --loop-episodes 200            # CPU, Conv-4, 84 px
    python scripts/bench_eval.py --episodes 10000 --backbone resnet12 --device cuda
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fewshot_cam.cli.common import pick_device
from fewshot_cam.data.episodes import make_episodes
from fewshot_cam.data.split import Split
from fewshot_cam.fewshot.episodic import check_methods, evaluate_chunk, evaluate_episodes
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.models.features import extract_features


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=10000, help="episodes evaluated by the batched path")
    p.add_argument("--loop-episodes", type=int, default=200, help="episodes timed in the per-episode loop")
    p.add_argument("--backbone", default="conv4", help="conv4, resnet12, ... (random weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--methods", default="protonet")
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--classes", type=int, default=20, help="classes of the synthetic split")
    p.add_argument("--per-class", type=int, default=600, help="images per class (20 x 600 = miniImageNet test)")
    p.add_argument("--image-size", type=int, default=84)
    p.add_argument("--batch-size", type=int, default=500, help="episodes per batched chunk")
    p.add_argument("--feature-batch", type=int, default=256, help="images per forward pass (batched path)")
    return p.parse_args()


def random_split(classes: int, per_class: int, size: int) -> Split:
    """classes x per_class random uint8 images (the timing does not depend on their content)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(classes * per_class, size, size, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(classes, dtype=np.int64), per_class)
    return Split(images, labels, tuple(f"c{c:03d}" for c in range(classes)), name="random/test")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_batched(model, split, indices, args, methods, device) -> tuple[dict, float, float]:
    sync(device)
    start = time.perf_counter()
    features = extract_features(model, split.images, batch_size=args.feature_batch)  # (n_images, D)
    sync(device)
    mid = time.perf_counter()
    accuracies = evaluate_episodes(features, indices, args.shots, methods, batch_size=args.batch_size)
    sync(device)
    return accuracies, mid - start, time.perf_counter() - mid


def run_loop(model, split, indices, args, methods, device) -> tuple[dict, float]:
    """One episode at a time: gather its images, forward them, score it."""
    out = {m: [] for m in methods}
    sync(device)
    start = time.perf_counter()
    for e, episode in enumerate(indices):  # (N, K+Q)
        images = split.images[episode.flatten().numpy()]  # (N*(K+Q), H, W, 3)
        features = extract_features(model, images, batch_size=len(images))  # (N*(K+Q), D)
        local = torch.arange(episode.numel()).view(1, *episode.shape)  # (1, N, K+Q) into ``features``
        for m, acc in evaluate_chunk(features, local, e, args.shots, methods, seed=0).items():
            out[m].append(acc)
    sync(device)
    return {m: torch.cat(a).cpu().numpy() for m, a in out.items()}, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    device = pick_device(args.device)
    methods = check_methods(args.methods)
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=args.backbone), num_classes=64).to(device).eval()
    split = random_split(args.classes, args.per_class, args.image_size)
    indices = make_episodes(split, args.ways, args.shots, args.queries, args.episodes, seed=0).indices
    loop_n = min(args.loop_episodes, args.episodes)
    # Warm-up (allocator, cuDNN autotuning, thread pools) outside the timings.
    run_loop(model, split, indices[:2], args, methods, device)
    extract_features(model, split.images[: args.feature_batch], batch_size=args.feature_batch)

    batched, t_features, t_eval = run_batched(model, split, indices, args, methods, device)
    looped, t_loop = run_loop(model, split, indices[:loop_n], args, methods, device)
    for m in methods:
        differ = int((np.abs(batched[m][:loop_n] - looped[m]) > 1e-6).sum())
        print(f"{m}: {differ} of {loop_n} loop episodes differ from the batched run "
              f"(mean {batched[m][:loop_n].mean():.2f} vs {looped[m].mean():.2f})")
        # Features of an image forwarded in another batch may differ in the last bits (bf16 on CUDA),
        # which can flip a near-tie; anything more is a bug.
        assert differ <= max(1, loop_n // 100), f"{m}: batched and loop accuracies disagree"

    per_episode = args.ways * (args.shots + args.queries)
    loop_total = t_loop * args.episodes / loop_n
    batched_total = t_features + t_eval
    bound = args.episodes * per_episode / len(split.images)
    print(f"device {device}, backbone {args.backbone}, {args.image_size} px, {len(split.images)} images, "
          f"{args.episodes} episodes {args.ways}-way {args.shots}-shot {args.queries}-query, methods {methods}")
    print(f"batched: {batched_total:.2f} s ({t_features:.2f} s features + {t_eval:.2f} s evaluation)")
    print(f"loop:    {t_loop:.2f} s for {loop_n} episodes ({loop_n / t_loop:.1f} episodes/s), "
          f"{loop_total:.1f} s scaled to {args.episodes}")
    ratio = loop_total / batched_total
    print(f"speed-up {ratio:.1f}x; forward-pass bound E*N*(K+Q)/n_images = {bound:.1f}x "
          f"({100 * ratio / bound:.0f}% of the bound)")


if __name__ == "__main__":
    main()
