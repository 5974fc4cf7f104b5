"""Cost of the background ablation, and Score-CAM's memory as a function of its batch size.

    python scripts/bench_ablation.py --device cuda --backbone conv4 --images 3000 --image-size 84 --episodes 600
    python scripts/bench_ablation.py --device cpu --backbone tiny --images 200 --image-size 32 --episodes 20 \\
        --scorecam-images 2 --scorecam-batches 4 16

Prints (1) the time of one feature extraction of all images, (2) the time of the whole ablation (every
condition: its images built on the device and embedded once, then all episodes) and their ratio, with the
number of images each condition embeds (one per image for original/foreground/background/bg-tiled, one per
query for mixed-same/mixed-rand), and (3) Score-CAM's peak memory for each batch size:
torch.cuda.max_memory_allocated on CUDA; on the CPU (Linux) the growth of the peak resident set
(VmHWM) of a fresh process, since tracemalloc cannot see tensor memory and the allocator keeps freed
memory resident. Random weights and random images with box masks: timings do not depend on what is drawn.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fewshot_cam.analysis.ablation import Swaps, compact, condition_pairs, run_ablation
from fewshot_cam.analysis.attribution import attribute, classifier_scorer
from fewshot_cam.analysis.conditions import CONDITIONS, choose_donors
from fewshot_cam.data.episodes import make_episodes
from fewshot_cam.data.split import Split
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.models.features import extract_features


def fake_split(n: int, size: int, classes: int = 20, seed: int = 0) -> Split:
    """Random uint8 images with a random box foreground mask each."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), bool)
    for i, (y, x) in enumerate(rng.integers(0, size // 2, (n, 2))):
        masks[i, y : y + size // 2, x : x + size // 2] = True
    labels = np.arange(n) % classes
    return Split(images, labels, tuple(f"c{c:02d}" for c in range(classes)), masks, "bench/test")


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def timed_ablation(model, split: Split, episodes, shots: int, device: torch.device) -> tuple[float, dict[str, int]]:
    """Seconds of the whole default ablation (swaps chosen outside the timing), and the images each condition embeds."""
    donors = {
        c: choose_donors(split.labels, episodes.indices, CONDITIONS.get(c).donor, 0)
        for c in ("mixed-same", "mixed-rand")
    }
    rows, local = compact(episodes.indices, *(torch.from_numpy(r) for r, _ in donors.values()))
    swaps = Swaps(dict(zip(donors, local[1:])), {c: torch.from_numpy(t) for c, (_, t) in donors.items()})
    images, masks = split.images[rows], torch.from_numpy(split.masks[rows])
    conditions = CONDITIONS.names()
    seconds = timed(
        lambda: run_ablation(model, images, masks, local[0], shots, ["protonet"], conditions, swaps), device
    )
    embedded = {c: len(condition_pairs(c, local[0], swaps, shots, "queries")[0]) or len(images) for c in conditions}
    return seconds, embedded


def scorecam_peak(backbone: str, size: int, images: int, batch: int, device_name: str) -> float:
    """Peak memory (MiB) of Score-CAM on ``images`` random images with ``batch`` masked copies per pass."""
    device = torch.device(device_name)
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone), num_classes=10).to(device).eval()
    x = torch.rand(images, 3, size, size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        attribute("scorecam", classifier_scorer(model), x, batch_size=batch)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset this process's peak RSS (VmHWM)
    before = proc_status_mib("VmRSS")
    attribute("scorecam", classifier_scorer(model), x, batch_size=batch)
    return proc_status_mib("VmHWM") - before


def proc_status_mib(key: str) -> float:
    """A memory line of /proc/self/status (kB) in MiB."""
    line = next(s for s in Path("/proc/self/status").read_text().splitlines() if s.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="conv4")
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--image-size", type=int, default=84)
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--scorecam-images", type=int, default=8)
    p.add_argument("--scorecam-batches", type=int, nargs="+", default=[16, 128])
    args = p.parse_args()
    device = torch.device(args.device)
    split = fake_split(args.images, args.image_size)
    model = build_model(ModelConfig(backbone=args.backbone), num_classes=10).to(device).eval()
    episodes = make_episodes(split, args.ways, args.shots, args.queries, args.episodes, seed=0)
    extract_features(model, split.images[:64])  # warm-up
    one = timed(lambda: extract_features(model, split.images), device)
    full, embedded = timed_ablation(model, split, episodes, args.shots, device)
    print(f"one feature extraction of {args.images} images: {one:.3f} s")
    print(f"ablation ({len(embedded)} conditions, {args.episodes} episodes): {full:.3f} s ({full / one:.2f}x); "
          f"images embedded per condition: {embedded}")
    spawn = multiprocessing.get_context("spawn")
    for batch in args.scorecam_batches:
        call = (args.backbone, args.image_size, args.scorecam_images, batch, args.device)
        if device.type == "cuda":
            peak = scorecam_peak(*call)
        else:
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:  # a fresh process each: freed memory stays resident
                peak = pool.submit(scorecam_peak, *call).result()
        print(f"Score-CAM peak memory, {args.scorecam_images} images, batch_size {batch}: {peak:.1f} MiB")


if __name__ == "__main__":
    main()
