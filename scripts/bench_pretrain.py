#!/usr/bin/env python
"""Benchmark pretraining steps (the library's own ``train_step``, ``make_batch``) on one device.

(a) CAM-loss step vs CE step on the same backbone and batch, interleaved repetitions, medians and
    their ratio (target <= 1.05x).
(b) Training throughput in images per second: the step alone, and with the batch pipeline (index
    gather from a uint8 split + device augmentation) in front of it.
On CUDA: bf16 autocast and channels-last (``--no-amp`` / ``--no-channels-last`` to turn off).

    python scripts/bench_pretrain.py --device cuda --backbones resnet12,conv4 --image-size 84 --batch-size 64
    python scripts/bench_pretrain.py --device cpu --backbones tiny --image-size 16 --batch-size 8 --steps 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fewshot_cam.cli.common import add_device_argument, pick_device
from fewshot_cam.losses.camloss import LossConfig
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.training.augment import AugmentConfig
from fewshot_cam.training.loop import train_step
from fewshot_cam.training.objectives import FeaturesAndHead, Objective
from fewshot_cam.training.optim import OptimConfig, build_optimizer, build_scheduler
from fewshot_cam.training.runner import autocast_for
from fewshot_cam.training.state import EpochInputs, make_batch

LOSSES = {"ce": LossConfig(loss="ce"), "camloss": LossConfig(loss="camloss", alpha=1.0, warmup_epochs=0)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_argument(p)
    p.add_argument("--backbones", default="resnet12,conv4", help="comma-separated backbone names")
    p.add_argument("--image-size", type=int, default=84)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-classes", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed repetitions of each measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN autotune, compile)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """One model + optimiser on ``device`` and a random uint8 split to draw batches from."""

    def __init__(self, backbone: str, args: argparse.Namespace, device: torch.device) -> None:
        g = torch.Generator().manual_seed(0)
        self.device = device
        self.model = build_model(ModelConfig(backbone=backbone), args.num_classes).to(device)
        channels_last = device.type == "cuda" and not args.no_channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if args.compile:
            self.model.backbone.compile()
        self.forward = FeaturesAndHead(self.model)
        optim = OptimConfig(schedule="constant", batch_size=args.batch_size)
        self.optimizer = build_optimizer(self.model, optim)
        self.scheduler = build_scheduler(self.optimizer, optim, steps_per_epoch=1)
        self.autocast = autocast_for(device, not args.no_amp)
        n = 8 * args.batch_size
        s = args.image_size
        self.data = EpochInputs(
            images=torch.randint(0, 256, (n, s, s, 3), dtype=torch.uint8, generator=g),
            labels=torch.randint(0, args.num_classes, (n,), generator=g).to(device),
            batch_size=args.batch_size, max_steps=0, augment=AugmentConfig(), seed=0, channels_last=channels_last,
        )
        self.generator = g
        self.index = torch.arange(args.batch_size)
        self.x, self.y = make_batch(self.data, self.index, device, g)

    def step(self, loss: str, with_batch: bool = False) -> float:
        """Seconds for one training step (optionally including making the batch)."""
        sync(self.device)
        start = time.perf_counter()
        x, y = make_batch(self.data, self.index, self.device, self.generator) if with_batch else (self.x, self.y)
        objective = Objective(LOSSES[loss], self.model.head)
        train_step(self.forward, objective, self.optimizer, self.scheduler, x, y, 0, self.autocast)
        sync(self.device)
        return time.perf_counter() - start


def bench_backbone(backbone: str, args: argparse.Namespace, device: torch.device) -> None:
    bench = Bench(backbone, args, device)
    for _ in range(args.warmup):
        for loss in LOSSES:
            bench.step(loss, with_batch=True)
    times: dict[str, list[float]] = {"ce": [], "camloss": [], "pipeline": []}
    for rep in range(args.steps):  # interleaved, alternating order, so drift hits both alike
        for loss in LOSSES if rep % 2 == 0 else reversed(LOSSES):
            times[loss].append(bench.step(loss))
        times["pipeline"].append(bench.step("camloss", with_batch=True))
    med = {k: statistics.median(v) for k, v in times.items()}
    b = args.batch_size
    print(f"{backbone:>10} {args.image_size:>4}px batch {b:>4} | CE {1e3 * med['ce']:8.2f} ms  "
          f"CAM {1e3 * med['camloss']:8.2f} ms  ratio CAM/CE {med['camloss'] / med['ce']:.3f}x | "
          f"img/s CE {b / med['ce']:9.1f}  CAM {b / med['camloss']:9.1f}  CAM+batch {b / med['pipeline']:9.1f}")


def main() -> None:
    args = parse_args()
    device = pick_device(args.device)
    torch.backends.cudnn.benchmark = True
    amp = device.type == "cuda" and not args.no_amp
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name}); bf16 autocast {'on' if amp else 'off'}; "
          f"compile {'on' if args.compile else 'off'}; "
          f"median of {args.steps} interleaved steps after {args.warmup} warm-up")
    for backbone in args.backbones.split(","):
        bench_backbone(backbone.strip(), args, device)


if __name__ == "__main__":
    main()
