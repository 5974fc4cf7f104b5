"""Stage b, pretraining throughput: ResNet-12 at 84 px, CE and CAM-loss, eager.

A timed block is ``steps`` consecutive training steps as ``train_one_epoch`` runs them: gather the
uint8 batch from the split on the device, augment it on the device (the RFS recipe's crop, jitter and
flip), then ``train_step`` (bf16 autocast and channels-last on CUDA, SGD). Blocks of CE and CAM-loss
alternate, and each figure is the median block. The work per step is counted with
``torch.utils.flop_counter`` and set against the measured peak of a large bf16 matrix product; the
profiler's top kernels of 3 steps per (batch size, loss) say where the time goes.
Targets: >= 10,000 images/s on one H100/H200; a CAM-loss step <= 1.05x a CE step.
"""

from __future__ import annotations

import functools
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from fewshot_cam.bench._api import (
    AugmentConfig,
    EpochInputs,
    FeaturesAndHead,
    LossConfig,
    ModelConfig,
    Objective,
    OptimConfig,
    autocast_for,
    build_model,
    build_optimizer,
    build_scheduler,
    make_batch,
    train_step,
)
from fewshot_cam.bench.context import Context
from fewshot_cam.bench.profile import top_kernels

LOSSES = {"ce": LossConfig(loss="ce"), "camloss": LossConfig(loss="camloss", alpha=1.0, warmup_epochs=0)}
NUM_CLASSES = 64


def matmul_peak(ctx: Context, n: int, reps: int = 10) -> float:
    """Measured TFLOP/s of an n x n x n bf16 matrix product (mean of ``reps`` after 3 warm-ups)."""
    a = torch.randn(n, n, device=ctx.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=ctx.device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _, seconds = ctx.timed(lambda: [a @ b for _ in range(reps)])
    return 2 * n**3 * reps / seconds / 1e12


class Trainer:
    """One model and optimiser at batch size ``batch_size``, drawing batches from random uint8 images
    held on the device (``data.on_device``, as the RFS config)."""

    def __init__(self, ctx: Context, batch_size: int, compile_backend: str | None = None) -> None:
        s, device = ctx.sizes, ctx.device
        self.ctx, self.batch_size = ctx, batch_size
        torch.manual_seed(0)
        model = build_model(ModelConfig(backbone=s.backbone, drop_block=s.backbone == "resnet12"), NUM_CLASSES).to(
            device
        )
        channels_last = device.type == "cuda"
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if compile_backend:
            model.backbone.compile(backend=compile_backend)
        self.model, self.forward = model, FeaturesAndHead(model)
        optim = OptimConfig(schedule="constant", batch_size=batch_size)
        self.optimizer = build_optimizer(model, optim)
        self.scheduler = build_scheduler(self.optimizer, optim, steps_per_epoch=1)
        self.autocast = autocast_for(device, amp=True)
        g = torch.Generator().manual_seed(0)
        n = 16 * batch_size
        images = torch.randint(0, 256, (n, s.image_size, s.image_size, 3), dtype=torch.uint8, generator=g)
        self.data = EpochInputs(
            images=images.to(device),
            labels=torch.randint(0, NUM_CLASSES, (n,), generator=g).to(device),
            batch_size=batch_size,
            max_steps=0,
            augment=AugmentConfig(),
            seed=0,
            channels_last=channels_last,
        )
        self.generator = g
        self.fixed = make_batch(self.data, torch.arange(batch_size), device, g)

    def step(self, loss: str, with_batch: bool = True) -> None:
        index = torch.randint(0, len(self.data.images), (self.batch_size,), generator=self.generator)
        x, y = make_batch(self.data, index, self.ctx.device, self.generator) if with_batch else self.fixed
        train_step(self.forward, Objective(LOSSES[loss], self.model.head), self.optimizer, self.scheduler, x, y, 0,
                   self.autocast)

    def block(self, loss: str, steps: int, with_batch: bool = True) -> float:
        """Seconds for ``steps`` consecutive steps (one device sync at each end)."""
        return self.ctx.timed(lambda: [self.step(loss, with_batch) for _ in range(steps)])[1]

    def flops_per_step(self, loss: str) -> float:
        with FlopCounterMode(display=False) as counter:
            self.step(loss)
        return float(counter.get_total_flops())


def step_flops(trainer: Trainer) -> dict[str, float]:
    """FLOPs of one training step per loss (counted eagerly: a compiled module is counted uncompiled)."""
    return {loss: trainer.flops_per_step(loss) for loss in LOSSES}


def measure(trainer: Trainer, peak_tflops: float, flops: dict[str, float] | None = None) -> dict:
    """Interleaved CE / CAM-loss blocks (order alternating), plus CE blocks without the batch pipeline."""
    s = trainer.ctx.sizes
    times: dict[str, list[float]] = {"ce": [], "camloss": [], "ce_step_only": []}
    for rep in range(s.blocks):
        for loss in (LOSSES if rep % 2 == 0 else reversed(LOSSES)):
            times[loss].append(trainer.block(loss, s.steps))
        times["ce_step_only"].append(trainer.block("ce", s.steps, with_batch=False))
    med = {k: statistics.median(v) for k, v in times.items()}
    images = trainer.batch_size * s.steps
    flops = step_flops(trainer) if flops is None else flops
    out = {f"{k}_images_per_s": round(images / v, 1) for k, v in med.items()}
    out["cam_over_ce"] = round(med["camloss"] / med["ce"], 4)
    out["batch_pipeline_share"] = round(1 - med["ce_step_only"] / med["ce"], 4)
    for loss in LOSSES:
        achieved = flops[loss] * s.steps / med[loss] / 1e12
        out[f"{loss}_gflop_per_step"] = round(flops[loss] / 1e9, 2)
        out[f"{loss}_tflops"] = round(achieved, 2)
        out[f"{loss}_share_of_peak"] = round(achieved / peak_tflops, 4)
    out["meets_10k"] = bool(min(out["ce_images_per_s"], out["camloss_images_per_s"]) >= 10000)
    out["meets_1.05x"] = bool(out["cam_over_ce"] <= 1.05)
    return out


def warm_up(trainer: Trainer, steps: int = 3) -> float:
    """Untimed steps of each loss (cuDNN, allocator; compilation when compiled); their seconds."""
    start = time.perf_counter()
    for _ in range(steps):
        for loss in LOSSES:
            trainer.step(loss)
    trainer.ctx.sync()
    return time.perf_counter() - start


def run(ctx: Context) -> None:
    s = ctx.sizes
    peak = ctx.put("bf16_matmul_peak_tflops", round(matmul_peak(ctx, s.peak_n), 1))
    ctx.put("setting", f"{s.backbone} at {s.image_size} px, {s.steps} steps per block, median of {s.blocks} blocks")
    for batch_size in s.batch_sizes:
        trainer = Trainer(ctx, batch_size)
        warm_up(trainer)
        ctx.put(f"eager_batch_{batch_size}", measure(trainer, peak))
        for loss in LOSSES:
            block = functools.partial(trainer.block, loss, 3)
            ctx.put(f"top_kernels_{loss}_batch_{batch_size}", top_kernels(block, ctx.device))
    torch.backends.cudnn.benchmark = True  # not set by the library: what autotuning would add
    trainer = Trainer(ctx, s.batch_sizes[-1])
    warm_up(trainer)
    ctx.put(f"eager_cudnn_benchmark_batch_{s.batch_sizes[-1]}", measure(trainer, peak))
