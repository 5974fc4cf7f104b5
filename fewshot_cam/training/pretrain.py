"""Supervised pretraining on the base classes: ``fit`` = set up, (resume,) then per epoch train,
validate, log, checkpoint.

Loss: L = L_CE + alpha L_CAM (Wang et al., ICCV 2021; alpha = 0 for ``loss: ce`` and during the
CAM-loss warm-up), plus distillation and SAOL terms when configured (:mod:`.objectives`).
Validation: ProtoNet accuracy on fixed val episodes, which picks ``best.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from fewshot_cam.errors import UserError
from fewshot_cam.models.checkpoint import load_model
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.models.factory import build_model
from fewshot_cam.training import distributed
from fewshot_cam.training.config import PretrainConfig
from fewshot_cam.training.loop import train_one_epoch
from fewshot_cam.training.objectives import FeaturesAndHead, Objective
from fewshot_cam.training.optim import build_optimizer, build_scheduler
from fewshot_cam.training.runner import autocast_for, epoch_seed, run_epochs
from fewshot_cam.training.state import EpochInputs, RunState, load_data, open_run, start_run
from fewshot_cam.training.validation import sample_episodes


@dataclass
class Pretraining(RunState):
    """One pretraining run (:class:`~fewshot_cam.training.state.RunState`) and ``teacher``, the frozen
    distillation teacher (not DDP-wrapped, not optimised), if any."""

    teacher: nn.Module | None = None


def build_network(cfg: PretrainConfig, num_classes: int, device: torch.device) -> FewShotClassifier:
    """The model, seeded from ``run.seed``, on ``device`` (channels-last / compiled on CUDA if asked)."""
    torch.manual_seed(epoch_seed(cfg.run.seed, 0, 0))
    model = build_model(cfg.model, num_classes).to(device)
    if cfg.run.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if cfg.run.compile:
        model.backbone.compile()  # in place: state_dict keys unchanged
    return model


def load_teacher(path: str | Path, num_classes: int, map_location: str | torch.device = "cpu") -> nn.Module:
    """The frozen teacher: eval mode, no parameter requires grad. UserError if its classes differ."""
    teacher, ckpt = load_model(path, map_location=map_location)
    if int(ckpt["num_classes"]) != num_classes:
        raise UserError(
            f"teacher has {ckpt['num_classes']} classes but the student is trained on {num_classes}; "
            "distillation needs the same base classes",
            path,
        )
    return teacher.eval().requires_grad_(False)


def build_teacher(cfg: PretrainConfig, num_classes: int, device: torch.device) -> nn.Module | None:
    """The frozen teacher of ``distill.teacher`` on ``device`` (channels-last on CUDA like the student);
    None when ``distill.mode`` is none."""
    if cfg.distill.mode == "none":
        return None
    teacher = load_teacher(cfg.distill.teacher, num_classes, device)
    if cfg.run.channels_last and device.type == "cuda":
        teacher = teacher.to(memory_format=torch.channels_last)
    return teacher


def setup(cfg: PretrainConfig, device: torch.device, info: distributed.DistInfo) -> Pretraining:
    """Load data, build model (and teacher), optimiser and per-step schedule; sample the fixed val episodes."""
    train, val = load_data(cfg, info)
    model = build_network(cfg, train.num_classes, device)
    teacher = build_teacher(cfg, train.num_classes, device)
    optimizer = build_optimizer(model, cfg.optim)
    steps_per_epoch = len(train.images) // cfg.optim.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"optim.batch_size {cfg.optim.batch_size} exceeds the {len(train.images)} images of "
                        f"{train.name}")
    if cfg.optim.steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, cfg.optim.steps_per_epoch)
    images = torch.from_numpy(train.images)  # (N, H, W, 3) uint8
    data = EpochInputs(
        images=images.to(device) if cfg.data.on_device else images,
        labels=torch.from_numpy(train.labels).to(device),
        batch_size=cfg.optim.batch_size,
        max_steps=steps_per_epoch,
        augment=cfg.augment,
        seed=cfg.run.seed,
        channels_last=cfg.run.channels_last and device.type == "cuda",
    )
    return Pretraining(
        cfg,
        device,
        info,
        model,
        distributed.wrap(FeaturesAndHead(model, cfg.distill.mode == "zk-at"), device, info),
        optimizer,
        build_scheduler(optimizer, cfg.optim, steps_per_epoch),
        data,
        train.class_names,
        val,
        sample_episodes(val, cfg.val) if val is not None else None,
        teacher=teacher,
    )


def fit(
    cfg: PretrainConfig, device: torch.device, info: distributed.DistInfo = distributed.DistInfo(),
    resume_run: bool = False,
) -> Pretraining:
    """Pretrain per ``cfg`` on ``device`` into the run folder ``cfg.run.out``; returns the final state."""
    with open_run(cfg.run.out, info, cfg.run.tensorboard, resume_run) as run_dir:
        state = setup(cfg, device, info)
        start_run(state, run_dir, resume_run)
        autocast = autocast_for(device, cfg.run.amp)
        objective = Objective(cfg.loss, state.model.head, cfg.distill, cfg.saol, state.teacher)

        run_epochs(state, run_dir, lambda epoch: train_one_epoch(state, objective, epoch, autocast))
    return state
