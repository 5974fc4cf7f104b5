"""The state of one training run and its life cycle, shared by pretraining and meta-training:
resume from ``last.pt``, validate, log, checkpoint (the payload of :mod:`fewshot_cam.models.checkpoint`).

Both :class:`~fewshot_cam.training.pretrain.Pretraining` and
:class:`~fewshot_cam.training.metatrain.MetaTraining` are a :class:`RunState`; their configs share the
``data``, ``val``, ``optim``, ``model`` and ``run`` sections this module reads.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from fewshot_cam.config import to_dict
from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.models.checkpoint import load_checkpoint, save_checkpoint
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.stats import Interval
from fewshot_cam.training import distributed
from fewshot_cam.training.augment import AugmentConfig, augment, gather_batch
from fewshot_cam.training.run_checkpoints import (
    best_value,
    check_finite_state,
    drop_orphan_best,
    repair_best,
    write_checkpoints,
)
from fewshot_cam.training.run_dir import RunDir
from fewshot_cam.training.validation import validate

RUN_KEYS_THAT_MUST_MATCH = ("seed",)  # other run.* settings (device, compile, ...) may change on resume


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


@dataclass
class RunState:
    """Everything one run holds; ``epoch`` counts completed epochs, ``best`` the best val accuracy,
    ``best_epoch`` the epoch best.pt holds.

    ``cfg`` is the run's config (``PretrainConfig`` or ``MetaTrainConfig``); ``forward`` is the module
    the optimiser steps through (DDP-wrapped under torchrun).
    """

    cfg: Any
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
    best_epoch: int | None = None
    epoch_images: int = 0
    """Images the latest epoch trained on, over all ranks (for the log line's images/s)."""


def load_data(cfg: Any, info: distributed.DistInfo) -> tuple[Split, Split | None]:
    """The training split and (rank 0, validation on) the validation split."""
    d = cfg.data
    train = load_split(d.dataset, d.root, d.train_split, d.image_size, options=d)
    validate = cfg.val.every > 0 and info.is_main
    val = load_split(d.dataset, d.root, cfg.val.split, d.image_size, options=d) if validate else None
    return train, val


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


def resume(state: RunState, run_dir: RunDir) -> None:
    """Restore weights, optimiser, schedule, epoch and best accuracy from last.pt, after making its
    summary of best.pt true (:func:`~fewshot_cam.training.run_checkpoints.repair_best`)."""
    path = run_dir.last
    ckpt = load_checkpoint(path, map_location=state.device)
    diff = _first_difference(comparable(ckpt.get("config", {})), comparable(to_dict(state.cfg)))
    if diff:
        raise UserError(f"cannot resume: the checkpoint does not fit this configuration ({diff})", path)
    try:
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, KeyError, ValueError) as err:
        why = " ".join(str(err).split())[:200]
        raise UserError(f"cannot resume: the checkpoint's state does not fit ({why})", path) from None
    state.epoch = int(ckpt["epoch"])
    repaired = repair_best(ckpt, run_dir.best)
    if repaired and state.info.is_main:
        save_checkpoint(run_dir.best if repaired == "best" else path, ckpt)
    state.best, state.best_epoch = best_value(ckpt["best_metric"]), ckpt["best_epoch"]


def checkpoint_payload(state: RunState) -> dict:
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
        "best_epoch": state.best_epoch,
    }


def should_validate(cfg: Any, epoch: int) -> bool:
    every = cfg.val.every
    return every > 0 and (epoch % every == 0 or epoch == cfg.optim.epochs)


def end_epoch(state: RunState, epoch: int, stats: dict[str, float], run_dir: RunDir, started: float) -> dict:
    """Validate (rank 0), log one metrics record (time: seconds since ``started``, validation included),
    write best.pt if improved, then last.pt (:mod:`.run_checkpoints`); nothing unless the state is finite."""
    check_finite_state(state.model, state.optimizer, epoch)
    state.epoch = epoch
    val = None
    if state.val_split is not None and should_validate(state.cfg, epoch):
        val = validate(state.model, state.val_split, state.val_episodes, state.cfg.val)
        state.last_val = val
    improved = val.mean > state.best if val is not None else state.cfg.val.every <= 0
    if val is not None and improved:
        state.best = val.mean
    if improved:
        state.best_epoch = epoch
    record = {
        "epoch": epoch, **stats,
        "val_acc": val.mean if val else None, "val_ci95": val.ci95 if val else None,
        "time": time.perf_counter() - started,
    }
    if state.info.is_main:
        run_dir.log_epoch(record)
        write_checkpoints(run_dir, checkpoint_payload(state), improved)
    distributed.barrier(state.info)
    return record


def open_run(out: str, info: distributed.DistInfo, tensorboard: bool, resume_run: bool) -> RunDir:
    """The run folder, locked (close it, or use ``with``); a fresh run refuses to overwrite one that holds last.pt."""
    run_dir = RunDir(out, info.is_main, tensorboard)
    if not resume_run and run_dir.last.exists():
        run_dir.close()
        raise UserError("the run folder already holds last.pt: pass --resume to continue it, or pick another --out",
                        run_dir.path)
    if not resume_run and run_dir.enabled:
        drop_orphan_best(run_dir.best)
    return run_dir


def start_run(state: RunState, run_dir: RunDir, resume_run: bool) -> None:
    """Restore last.pt when resuming, then write config.yaml and trim metrics.jsonl to the restored epoch."""
    if resume_run:
        resume(state, run_dir)
    run_dir.write_config(state.cfg)
    run_dir.start(state.epoch)
