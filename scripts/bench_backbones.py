"""Throughput of each backbone: a CE + CAM-loss training step and ``extract_features``.

Prints one line per backbone: images/s for training (forward, total_loss, backward, SGD step) and for
feature extraction. Run on a quiet machine; the CLI-style device choice lives here, not in the library.

    python scripts/bench_backbones.py --device cuda --image-size 84 --batch 128
    python scripts/bench_backbones.py --device cpu --image-size 32 --batch 8 --backbones tiny --steps 2
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from fewshot_cam.losses.camloss import LossConfig, total_loss
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.models.features import extract_features


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rate(model, x, y, steps: int) -> float:
    """Images per second of full training steps (after one warm-up step)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    cfg = LossConfig(loss="camloss")
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if x.is_cuda else contextlib.nullcontext()
    model.train()
    for i in range(steps + 1):
        if i == 1:
            sync(x.device)
            start = time.perf_counter()
        with amp:
            f = model.forward_features(x)
            loss, _ = total_loss(model.forward_head(f), f, model.head.weight, y, cfg, epoch=0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(x.device)
    return steps * len(x) / (time.perf_counter() - start)


def extract_rate(model, images: torch.Tensor, batch: int) -> float:
    extract_features(model, images[:batch], batch_size=batch)  # warm-up
    sync(images.device)
    start = time.perf_counter()
    extract_features(model, images, batch_size=batch)
    sync(images.device)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbones", default="conv4,resnet12,resnet18")
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--classes", type=int, default=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n = args.batch * args.steps
    images = torch.randint(0, 256, (n, args.image_size, args.image_size, 3), generator=g, dtype=torch.uint8)
    x = images[: args.batch].to(device).permute(0, 3, 1, 2).float().div(255)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
    print(f"device={device} image_size={args.image_size} batch={args.batch} steps={args.steps}")
    for name in args.backbones.split(","):
        model = build_model(ModelConfig(backbone=name), args.classes).to(device, memory_format=torch.channels_last)
        train = train_rate(model, x, y, args.steps)
        extract = extract_rate(model, images.to(device), args.batch)
        print(f"{name:14s} train {train:10.1f} img/s   extract {extract:10.1f} img/s")


if __name__ == "__main__":
    main()
