"""SGD and its learning-rate schedule, evaluated every step.

The schedule is a factor of the base rate as a function of t, the (fractional) number of epochs done:
t = step / steps_per_epoch. It is applied per step (a ``LambdaLR`` stepped after every optimiser
step), with milestones given in epochs, so a multi-step schedule drops exactly at epoch boundaries
(as ``MultiStepLR`` stepped per epoch would) while cosine decays smoothly. An optional linear warm-up
over the first ``lr_warmup_epochs`` multiplies the factor by (step + 1) / (warm-up steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Literal

import torch
import torch.nn as nn

from fewshot_cam.errors import UserError, check_range, check_ranges
from fewshot_cam.registry import Registry


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule (defaults: the RFS recipe, Tian et al. ECCV 2020, for miniImageNet)."""

    epochs: int = 100
    """Training epochs (one epoch = one pass over the training split, last partial batch dropped)."""
    batch_size: int = 64
    """Global batch size, split evenly over distributed ranks."""
    steps_per_epoch: int = 0
    """0: an epoch is one pass over the training split; n > 0: at most n batches per epoch (quick runs)."""
    lr: float = 0.05
    """Base learning rate."""
    momentum: float = 0.9
    """SGD momentum."""
    nesterov: bool = False
    """Nesterov momentum."""
    weight_decay: float = 5.0e-4
    """L2 weight decay, applied to every parameter."""
    schedule: Literal["multistep", "cosine", "constant"] = "multistep"
    """multistep: lr * gamma ** (milestones passed); cosine: lr * (1 + cos(pi t / epochs)) / 2; constant."""
    milestones: tuple[int, ...] = (60, 80)
    """Epochs at which the multi-step schedule multiplies the rate by ``gamma``."""
    gamma: float = 0.1
    """Multi-step decay factor."""
    lr_warmup_epochs: float = 0.0
    """Linear learning-rate warm-up length in epochs (0: none)."""

    def __post_init__(self) -> None:
        check_ranges("optim", self, {
            "epochs": (1, None), "batch_size": (1, None), "steps_per_epoch": (0, None), "lr": (0, None, True),
            "momentum": (0, 1), "weight_decay": (0, None), "gamma": (0, None, True), "lr_warmup_epochs": (0, None),
        })
        for milestone in self.milestones:
            check_range("optim.milestones", milestone, 0, None)
        if self.nesterov and self.momentum == 0:
            raise UserError("optim.nesterov needs optim.momentum > 0, got 0")


def multistep_factor(t: float, cfg: OptimConfig) -> float:
    return cfg.gamma ** sum(t >= m for m in cfg.milestones)


def cosine_factor(t: float, cfg: OptimConfig) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(t / cfg.epochs, 1.0)))


def constant_factor(t: float, cfg: OptimConfig) -> float:
    return 1.0


# schedule(t: epochs done, fractional, cfg) -> multiplier of cfg.lr
SCHEDULES: Registry[Callable[[float, OptimConfig], float]] = Registry("schedule")
SCHEDULES.register("multistep", multistep_factor, help="x gamma at each of the milestones (epochs)")
SCHEDULES.register("cosine", cosine_factor, help="cosine from lr to 0 over the epochs")
SCHEDULES.register("constant", constant_factor, help="lr throughout")


def lr_factor(step: int, cfg: OptimConfig, steps_per_epoch: int) -> float:
    """Multiplier of ``cfg.lr`` for optimiser step ``step`` (0-based)."""
    factor = SCHEDULES.get(cfg.schedule)(step / steps_per_epoch, cfg)
    warmup_steps = cfg.lr_warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay over every trainable parameter (``cfg`` is range-checked)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR``; its state (the step count) goes into checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, cfg=cfg, steps_per_epoch=steps_per_epoch))
