"""The one epoch runner shared by pretraining and meta-training (torchvision references style).

A training method supplies its epoch as the global batches every rank shares (``(steps, ...)``: image
indices for a supervised batch, ``(E, N, K+Q)`` indices for E episodes) and a step function
``step(i, local_batch, generator) -> {name: detached scalar}`` that does one optimiser step on this
rank's shard. The runner owns the rest: seeding, the shard, the non-finite-loss stop, the progress
bar, the all-reduce of the epoch means, the per-epoch log line, and (:func:`run_epochs`) the loop over
epochs with validation and checkpoints.

Randomness: every epoch reseeds its own generators from (seed, epoch, stream): stream 0 for what all
ranks share (the permutation, the episodes: drawn by the caller), 1 + 2 rank for torch's global
generator (dropout, DropBlock), 2 + 2 rank for the step's ``generator`` (augmentation, CutMix). An
epoch is a function of the weights, the optimiser state and those numbers alone, so a run resumed
from ``last.pt`` ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable

import numpy as np
import torch

from fewshot_cam.errors import UserError
from fewshot_cam.progress import format_seconds, progress
from fewshot_cam.stats import format_ci
from fewshot_cam.training import distributed
from fewshot_cam.training.run_checkpoints import last_good
from fewshot_cam.training.run_dir import RunDir
from fewshot_cam.training.state import RunState, end_epoch

NO_STEP = np.iinfo(np.int64).max  # "no non-finite loss seen yet"

# step(step index, this rank's shard of the global batch, the rank's generator) -> detached scalars
StepFn = Callable[[int, torch.Tensor, torch.Generator], dict[str, torch.Tensor]]


def autocast_for(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; nothing on the CPU."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A well-mixed 63-bit seed for (run seed, epoch, stream); stream is 0 for what all ranks share."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def check_finite(bad_step: torch.Tensor, epoch: int, steps: int, info: distributed.DistInfo) -> None:
    """Raise if any rank has seen a non-finite loss (bad_step holds the first such step, else NO_STEP)."""
    first = int(distributed.all_reduce(bad_step.clone(), info, op="min"))
    if first != NO_STEP:
        raise UserError(
            f"non-finite loss at epoch {epoch}, step {first + 1}/{steps}; stopped, {last_good(epoch)}; "
            "lower optim.lr or check the data"
        )


def run_epoch(
    state: RunState, batches: torch.Tensor, step: StepFn, names: tuple[str, ...], epoch: int, unit: str = "step"
) -> dict[str, float]:
    """Train one epoch (``epoch`` 1-based): ``step`` on this rank's shard of each row of ``batches``.

    ``names`` are the scalars ``step`` returns ("loss" first; a missing one counts 0), in a fixed order so
    the all-reduce stays aligned across ranks. Returns their means over the steps and ranks.
    """
    cfg, info, device = state.cfg, state.info, state.device
    state.model.train()
    torch.manual_seed(epoch_seed(cfg.run.seed, epoch, 1 + 2 * info.rank))  # dropout, DropBlock
    generator = torch.Generator().manual_seed(epoch_seed(cfg.run.seed, epoch, 2 + 2 * info.rank))
    sums = torch.zeros(len(names), device=device)
    bad_step = torch.tensor(NO_STEP, device=device)
    bar = progress(total=len(batches), desc=f"epoch {epoch}", enabled=cfg.run.progress and info.is_main, unit=unit,
                   lines=False)  # off a terminal the per-epoch line is the log
    state.epoch_images = batches.numel()  # images (or episode images) of the epoch, over all ranks
    for i, batch in enumerate(batches):
        values = step(i, distributed.shard(batch, info), generator)
        sums += torch.stack([values[k].float() if k in values else sums.new_zeros(()) for k in names])
        bad_step = torch.where(torch.isfinite(values["loss"]) | (bad_step != NO_STEP), bad_step, i)
        if (i + 1) % cfg.run.log_every == 0 or i + 1 == len(batches):
            check_finite(bad_step, epoch, len(batches), info)
            bar.set_postfix({k: f"{v / (i + 1):.3f}" for k, v in zip(names, sums.tolist())})
        bar.update()
    bar.close()
    distributed.broadcast_buffers(state.model, info)
    means = distributed.all_reduce(sums, info) / (len(batches) * info.world_size)
    return dict(zip(names, means.tolist()))


def epoch_line(record: dict, epochs: int, images_per_s: float, elapsed: float, eta: float) -> str:
    """One line per epoch: epoch, loss terms, train accuracy, val accuracy +- CI, learning rate,
    images/s, elapsed time of the run (this session) and the ETA of its remaining epochs."""
    skip = ("epoch", "val_acc", "val_ci95", "time", "lr")
    terms = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in skip and isinstance(v, (int, float)))
    val = f" val {format_ci(record['val_acc'], record['val_ci95'])}" if record.get("val_acc") is not None else ""
    lr = f" lr {record['lr']:.3g}" if "lr" in record else ""
    speed = f" {images_per_s:.0f} img/s" if images_per_s > 0 else ""
    return (f"epoch {record['epoch']}/{epochs} {terms}{val}{lr}{speed} ({record['time']:.1f} s; "
            f"elapsed {format_seconds(elapsed)}, ETA {format_seconds(eta)})")


def run_epochs(state: RunState, run_dir: RunDir, train_epoch: Callable[[int], dict[str, float]]) -> None:
    """For every remaining epoch (1-based): ``train_epoch(epoch)``, then validate, log and checkpoint.

    Rank 0 prints :func:`epoch_line` to stderr after every epoch, terminal or not, and appends it to
    the run folder's train.log."""
    first, epochs, session = state.epoch + 1, state.cfg.optim.epochs, time.perf_counter()
    try:
        for epoch in range(first, epochs + 1):
            start, lr = time.perf_counter(), state.optimizer.param_groups[0]["lr"]
            stats = {"lr": lr} | train_epoch(epoch)
            seconds = time.perf_counter() - start  # training only, validation excluded
            speed = state.epoch_images / max(seconds, 1e-9)
            record = end_epoch(state, epoch, stats, run_dir, start)
            if state.info.is_main:
                elapsed = time.perf_counter() - session
                line = epoch_line(record, epochs, speed, elapsed, elapsed / (epoch - first + 1) * (epochs - epoch))
                print(line, file=sys.stderr, flush=True)
                run_dir.log_line(line)
    finally:
        run_dir.close()
