"""Supervised pretraining on the base classes: ``fit`` = set up, (resume,) then per epoch train,
validate, log, checkpoint.

Loss: L = L_CE + alpha L_CAM (Wang et al., ICCV 2021; alpha = 0 for ``loss: ce`` and during the
CAM-loss warm-up), plus distillation and SAOL terms when configured (:mod:`.objectives`).
Validation: ProtoNet accuracy on fixed val episodes, which picks ``best.pt``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from fewshot_cam.config import to_dict
from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.losses.distill import load_teacher
from fewshot_cam.models.checkpoint import load_checkpoint, save_checkpoint
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.models.factory import build_model
from fewshot_cam.stats import Interval
from fewshot_cam.training import distributed
from fewshot_cam.training.config import PretrainConfig
from fewshot_cam.training.loop import EpochInputs, autocast_for, epoch_seed, train_one_epoch
from fewshot_cam.training.objectives import FeaturesAndHead, Objective
from fewshot_cam.training.optim import build_optimizer, build_scheduler
from fewshot_cam.training.run_dir import RunDir
from fewshot_cam.training.validation import sample_episodes, validate

RUN_KEYS_THAT_MUST_MATCH = ("seed",)  # other run.* settings (device, compile, ...) may change on resume


@dataclass
class Pretraining:
    """Everything one run holds; ``epoch`` counts completed epochs, ``best`` the best val accuracy;
    ``teacher`` the frozen distillation teacher (not DDP-wrapped, not optimised), if any."""

    cfg: PretrainConfig
    device: torch.device
    info: distributed.DistInfo
    model: FewShotClassifier
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data: EpochInputs
    class_names: tuple[str, ...]
    val_split: Split | None
    val_episodes: torch.Tensor | None
    epoch: int = 0
    best: float = -math.inf
    last_val: Interval | None = None
    teacher: nn.Module | None = None


def load_data(cfg: PretrainConfig, info: distributed.DistInfo) -> tuple[Split, Split | None]:
    """The training split and (rank 0, validation on) the validation split."""
    d = cfg.data
    train = load_split(d.dataset, d.root, d.train_split, d.image_size, options=d)
    validate = cfg.val.every > 0 and info.is_main
    val = load_split(d.dataset, d.root, cfg.val.split, d.image_size, options=d) if validate else None
    return train, val


def build_network(cfg: PretrainConfig, num_classes: int, device: torch.device) -> FewShotClassifier:
    """The model, seeded from ``run.seed``, on ``device`` (channels-last / compiled on CUDA if asked)."""
    torch.manual_seed(epoch_seed(cfg.run.seed, 0, 0))
    model = build_model(cfg.model, num_classes).to(device)
    if cfg.run.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if cfg.run.compile:
        model.backbone.compile()  # in place: state_dict keys unchanged
    return model


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
        raise UserError(f"optim.batch_size {cfg.optim.batch_size} exceeds the {len(train.images)} images of {train.name}")
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
        cfg, device, info, model, distributed.wrap(FeaturesAndHead(model, cfg.distill.mode == "zk-at"), device, info), optimizer,
        build_scheduler(optimizer, cfg.optim, steps_per_epoch), data, train.class_names,
        val, sample_episodes(val, cfg.val) if val is not None else None, teacher=teacher,
    )


def _first_difference(saved: dict, wanted: dict, prefix: str = "") -> str | None:
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: checkpoint has {a!r}, this run asks for {b!r}"
    return None


def comparable(cfg: dict) -> dict:
    """The parts of a config dict a resumed run must share with its checkpoint."""
    out = {k: v for k, v in cfg.items() if k != "run"}
    out["run"] = {k: cfg.get("run", {}).get(k) for k in RUN_KEYS_THAT_MUST_MATCH}
    return out


def resume(state: Pretraining, path) -> None:
    """Restore weights, optimiser, schedule, epoch and best accuracy from ``path`` (normally last.pt)."""
    ckpt = load_checkpoint(path, map_location=state.device)
    diff = _first_difference(comparable(ckpt.get("config", {})), comparable(to_dict(state.cfg)))
    if diff:
        raise UserError(f"cannot resume: the checkpoint does not fit this configuration ({diff})", path)
    try:
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise UserError(f"cannot resume: the checkpoint's state does not fit ({' '.join(str(err).split())[:200]})", path) from None
    state.epoch = int(ckpt["epoch"])
    state.best = float(ckpt["best_metric"]) if ckpt.get("best_metric") is not None else -math.inf


def checkpoint_payload(state: Pretraining) -> dict:
    """The checkpoint contract of ``fewshot_cam.models.checkpoint``."""
    return {
        "model": state.model.state_dict(),
        "model_config": to_dict(state.cfg.model),
        "config": to_dict(state.cfg),
        "class_names": list(state.class_names),
        "num_classes": len(state.class_names),
        "epoch": state.epoch,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "best_metric": None if math.isinf(state.best) else state.best,
    }


def should_validate(cfg: PretrainConfig, epoch: int) -> bool:
    every = cfg.val.every
    return every > 0 and (epoch % every == 0 or epoch == cfg.optim.epochs)


def end_epoch(state: Pretraining, epoch: int, stats: dict[str, float], run_dir: RunDir, started: float) -> dict:
    """Validate (rank 0), log one metrics record (time: seconds since ``started``, validation included),
    write last.pt and, if improved, best.pt."""
    state.epoch = epoch
    val = None
    if state.val_split is not None and should_validate(state.cfg, epoch):
        val = validate(state.model, state.val_split, state.val_episodes, state.cfg.val)
        state.last_val = val
    improved = val.mean > state.best if val is not None else state.cfg.val.every <= 0
    if val is not None and improved:
        state.best = val.mean
    record = {
        "epoch": epoch, **stats,
        "val_acc": val.mean if val else None, "val_ci95": val.ci95 if val else None,
        "time": time.perf_counter() - started,
    }
    if state.info.is_main:
        run_dir.log_epoch(record)
        payload = checkpoint_payload(state)
        save_checkpoint(run_dir.last, payload)
        if improved:
            save_checkpoint(run_dir.best, payload)
    distributed.barrier(state.info)
    return record


def open_run(out: str, info: distributed.DistInfo, tensorboard: bool, resume_run: bool) -> RunDir:
    """The run folder; a fresh run refuses to overwrite one that holds last.pt."""
    run_dir = RunDir(out, info.is_main, tensorboard)
    if not resume_run and run_dir.last.exists():
        raise UserError("the run folder already holds last.pt: pass --resume to continue it, or pick another --out", run_dir.path)
    return run_dir


def start_run(state: Pretraining, run_dir: RunDir, resume_run: bool) -> None:
    """Restore last.pt when resuming, then write config.yaml and trim metrics.jsonl to the restored epoch."""
    if resume_run:
        resume(state, run_dir.last)
    run_dir.write_config(state.cfg)
    run_dir.start(state.epoch)


def run_epochs(state: Pretraining, run_dir: RunDir, train_epoch: Callable[[int], dict[str, float]]) -> None:
    """For every remaining epoch (1-based): ``train_epoch(epoch)``, then validate, log and checkpoint."""
    try:
        for epoch in range(state.epoch + 1, state.cfg.optim.epochs + 1):
            start, lr = time.perf_counter(), state.optimizer.param_groups[0]["lr"]
            stats = {"lr": lr} | train_epoch(epoch)
            end_epoch(state, epoch, stats, run_dir, start)
    finally:
        run_dir.close()


def fit(cfg: PretrainConfig, device: torch.device, info: distributed.DistInfo = distributed.DistInfo(), resume_run: bool = False) -> Pretraining:
    """Pretrain per ``cfg`` on ``device`` into the run folder ``cfg.run.out``; returns the final state."""
    run_dir = open_run(cfg.run.out, info, cfg.run.tensorboard, resume_run)
    state = setup(cfg, device, info)
    start_run(state, run_dir, resume_run)
    autocast = autocast_for(device, cfg.run.amp)
    objective = Objective(cfg.loss, state.model.head, cfg.distill, cfg.saol, state.teacher)

    def train_epoch(epoch: int) -> dict[str, float]:
        return train_one_epoch(
            state.forward, state.model, state.optimizer, state.scheduler, state.data, objective, epoch, info,
            autocast, cfg.run.log_every, cfg.run.progress,
        )

    run_epochs(state, run_dir, train_epoch)
    return state
