"""The supervised training step and epoch of pretraining (torchvision references style).

An epoch is a seeded permutation of the training split cut into global batches (stream 0 of
:func:`~fewshot_cam.training.runner.epoch_seed`, shared by all ranks); each step is one SGD step on the
objective's loss. :func:`~fewshot_cam.training.runner.run_epoch` runs the steps.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from fewshot_cam.training.objectives import Objective, objective_loss
from fewshot_cam.training.runner import epoch_seed, run_epoch
from fewshot_cam.training.state import RunState, make_batch


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


def train_one_epoch(
    state: RunState, objective: Objective, epoch: int, autocast: contextlib.AbstractContextManager
) -> dict[str, float]:
    """Train one epoch (``epoch`` 1-based) -> means over the epoch and ranks of the loss, each of
    ``objective.part_names``, and train_acc (%)."""
    data, device = state.data, state.data.labels.device
    permutation = torch.Generator().manual_seed(epoch_seed(data.seed, epoch, 0))
    batches = epoch_batches(len(data.images), data.batch_size, permutation, data.max_steps)
    mix = torch.rand(len(batches), generator=permutation) < objective.saol.cutmix_prob  # shared by all ranks

    def step(i: int, index: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x, y = make_batch(data, index, device, generator)
        loss, parts, logits = train_step(state.forward, objective, state.optimizer, state.scheduler, x, y,
                                         epoch - 1, autocast, generator, bool(mix[i]))
        return parts | {"loss": loss, "train_acc": 100.0 * (logits.argmax(-1) == y).float().mean()}

    return run_epoch(state, batches, step, ("loss", *objective.part_names, "train_acc"), epoch, unit="batch")
