"""One training step and one training epoch (torchvision references style).

Randomness: every epoch reseeds its own generators from (seed, epoch, rank): the permutation of the
training split (shared by all ranks), the augmentation generator (per rank) and torch's global
generator (dropout, DropBlock). An epoch is therefore a function of the weights, the optimiser state
and those numbers alone, and a run resumed from ``last.pt`` ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from fewshot_cam.errors import UserError
from fewshot_cam.progress import progress
from fewshot_cam.training import distributed
from fewshot_cam.training.augment import AugmentConfig, augment, gather_batch
from fewshot_cam.training.objectives import Objective, objective_loss

NO_STEP = np.iinfo(np.int64).max  # "no non-finite loss seen yet"


def autocast_for(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; nothing on the CPU."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A well-mixed 63-bit seed for (run seed, epoch, stream); stream is 0 for the shared permutation."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, max_steps: int = 0) -> torch.Tensor:
    """A seeded permutation of ``n`` images cut into full global batches: (steps, batch_size).

    ``max_steps`` > 0 keeps only the first that many batches.
    """
    steps = n // batch_size if max_steps <= 0 else min(max_steps, n // batch_size)
    return torch.randperm(n, generator=generator)[: steps * batch_size].view(steps, batch_size)


def train_step(
    forward: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    epoch: int,
    autocast: contextlib.AbstractContextManager,
    generator: torch.Generator | None = None,
    mix: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """One SGD step on the objective's L. x: (B, 3, H, W); y: (B,); ``epoch`` 0-based; ``mix``: CutMix
    this batch (SAOL head), boxes from ``generator``.

    Returns the detached loss, its parts (``objective.part_names``) and the clean logits (B, K).
    """
    with autocast:
        loss, parts, logits = objective_loss(objective, forward, x, y, epoch, generator, mix)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.detach(), parts, logits.detach()


@dataclass
class EpochInputs:
    """What one epoch reads: the uint8 training images (N, H, W, 3) and labels (N,) on the device."""

    images: torch.Tensor
    labels: torch.Tensor
    batch_size: int
    max_steps: int
    augment: AugmentConfig
    seed: int
    channels_last: bool


def make_batch(data: EpochInputs, index: torch.Tensor, device: torch.device, generator: torch.Generator):
    """Gather, move and augment one batch: index (B,) -> x (B, 3, H, W) float, y (B,)."""
    x = augment(gather_batch(data.images, index, device), data.augment, generator)  # (B, 3, H, W)
    if data.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, data.labels[index.to(data.labels.device, non_blocking=True)]


def _check_finite(bad_step: torch.Tensor, epoch: int, steps: int, info: distributed.DistInfo) -> None:
    """Raise if any rank has seen a non-finite loss (bad_step holds the first such step, else NO_STEP)."""
    first = int(distributed.all_reduce(bad_step.clone(), info, op="min"))
    if first != NO_STEP:
        raise UserError(
            f"non-finite loss at epoch {epoch}, step {first + 1}/{steps}; stopped, the run folder keeps "
            f"the last good checkpoint (epoch {epoch - 1}); lower optim.lr or check the data"
        )


def train_one_epoch(
    forward: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data: EpochInputs,
    objective: Objective,
    epoch: int,
    info: distributed.DistInfo,
    autocast: contextlib.AbstractContextManager,
    log_every: int = 20,
    show_progress: bool = True,
) -> dict[str, float]:
    """Train one epoch (``epoch`` 1-based) -> means over the epoch and ranks of the loss and each of
    ``objective.part_names``, and train_acc (%)."""
    device = data.labels.device
    model.train()
    torch.manual_seed(epoch_seed(data.seed, epoch, 1 + 2 * info.rank))  # dropout, DropBlock
    generator = torch.Generator().manual_seed(epoch_seed(data.seed, epoch, 2 + 2 * info.rank))  # augmentation, CutMix
    permutation = torch.Generator().manual_seed(epoch_seed(data.seed, epoch, 0))
    batches = epoch_batches(len(data.images), data.batch_size, permutation, data.max_steps)
    mix = torch.rand(len(batches), generator=permutation) < objective.saol.cutmix_prob  # shared by all ranks
    names = ("loss", *objective.part_names, "correct")  # fixed order: all_reduce stays aligned across ranks
    sums = torch.zeros(len(names), device=device)
    bad_step = torch.tensor(NO_STEP, device=device)
    bar = progress(total=len(batches), desc=f"epoch {epoch}", enabled=show_progress and info.is_main, unit="batch")
    for step, batch in enumerate(batches):
        x, y = make_batch(data, distributed.shard(batch, info), device, generator)
        loss, parts, logits = train_step(forward, objective, optimizer, scheduler, x, y, epoch - 1, autocast,
                                         generator, bool(mix[step]))
        values = parts | {"loss": loss, "correct": (logits.argmax(-1) == y).sum().float()}
        sums += torch.stack([values[k].float() if k in values else sums.new_zeros(()) for k in names])
        bad_step = torch.where(torch.isfinite(loss) | (bad_step != NO_STEP), bad_step, step)
        if (step + 1) % log_every == 0 or step + 1 == len(batches):
            _check_finite(bad_step, epoch, len(batches), info)
            bar.set_postfix({k: f"{v / (step + 1):.3f}" for k, v in zip(names[:-1], sums.tolist()) if k != "alpha"}
                            | {"acc": f"{100 * sums[-1].item() / ((step + 1) * len(y)):.1f}"})
        bar.update()
    bar.close()
    distributed.broadcast_buffers(model, info)
    sums = distributed.all_reduce(sums, info).tolist()
    steps = len(batches) * info.world_size
    means = {k: v / steps for k, v in zip(names[:-1], sums)}
    return means | {"train_acc": 100.0 * sums[-1] / (len(batches) * data.batch_size)}
