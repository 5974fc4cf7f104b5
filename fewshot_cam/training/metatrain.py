"""Episodic ProtoNet fine-tuning ("meta-training") of a pretrained backbone.

Prototypical loss (Snell et al., "Prototypical Networks for Few-shot Learning", NeurIPS 2017) on
N-way K-shot Q-query episodes of the base classes: c_n = 1/K sum_k f(x_{n,k}),
L = -1/(NQ) sum_q log softmax_n(-d(f(q), c_n)), averaged over the E episodes of a step, starting from
the pretrained weights as in Meta-Baseline (Chen et al., "Meta-Baseline: Exploring Simple
Meta-Learning for Few-Shot Learning", ICCV 2021). The run machinery pretraining uses is shared
(:mod:`.state`, :mod:`.runner`): the optimiser and its per-step schedule, the epoch runner, the few-shot
validation that picks ``best.pt``, the run folder, checkpoints (same payload, same ``model_config``,
``num_classes`` and head weights as the pretrained checkpoint, so ``fewshot-cam eval`` and the CAM
analysis read them), resume and the non-finite stop.

Randomness: epoch e draws its episodes from seed (run.seed, e, 0) and its augmentation from
(run.seed, e, 2 + 2 rank), so a resumed run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn as nn

from fewshot_cam.config import from_dict, merge, to_dict
from fewshot_cam.data.episodes import EpisodeSampler, check_episode_count, check_setting
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError, check_ranges
from fewshot_cam.learn2learn_adapter import task_episodes
from fewshot_cam.losses.prototypical import prototypical_loss
from fewshot_cam.models.checkpoint import load_model
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.models.factory import ModelConfig
from fewshot_cam.registry import Registry
from fewshot_cam.training import distributed
from fewshot_cam.training.augment import AugmentConfig
from fewshot_cam.training.config import DataConfig, RunConfig
from fewshot_cam.training.optim import OptimConfig, build_optimizer, build_scheduler
from fewshot_cam.training.runner import autocast_for, epoch_seed, run_epoch, run_epochs
from fewshot_cam.training.state import EpochInputs, RunState, load_data, make_batch, open_run, start_run
from fewshot_cam.training.validation import ValConfig, sample_episodes

NO_AUTOCAST = contextlib.nullcontext()


@dataclass(frozen=True)
class MetaTrainConfig:
    """``fewshot-cam metatrain``: ProtoNet episodes from a pretrained checkpoint (defaults: Meta-Baseline)."""

    checkpoint: str = ""
    """Pretrained checkpoint (``pretrain``'s best.pt) whose weights, model and head start the run."""
    ways: int = 5
    """Classes per training episode (N). Snell et al. trained with more ways than tested (30-way for
    1-shot, 20-way for 5-shot on miniImageNet); Meta-Baseline trains 5-way from a pretrained init."""
    shots: int = 1
    """Support images per class (K); match the test setting (Snell et al.; Meta-Baseline)."""
    queries: int = 15
    """Query images per class (Q)."""
    episodes_per_epoch: int = 800
    """Episodes per epoch; the epoch is episodes_per_epoch // tasks_per_step optimiser steps."""
    tasks_per_step: int = 4
    """Episodes per optimiser step (E), embedded in one (E N (K+Q), 3, H, W) batch; the loss is their mean."""
    metric: Literal["euclidean", "cosine"] = "euclidean"
    """ProtoNet distance: squared Euclidean (Snell et al.) or 10 * cosine (Meta-Baseline's, scale fixed)."""
    sampler: Literal["native", "learn2learn"] = "native"
    """Episode source: our vectorised EpisodeSampler, or learn2learn's TaskDataset (same seeding)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training data; unset keys come from the pretrained checkpoint's data section."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Always the pretrained checkpoint's model (setting another raises)."""
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(enabled=False))
    """Augmentation of the episode images (off by default, as in Meta-Baseline's meta stage)."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=20, lr=1.0e-3, schedule="constant"))
    """SGD and schedule (Meta-Baseline: lr 0.001, momentum 0.9, weight decay 5e-4, 20 epochs of 200
    steps of 4 episodes). ``batch_size`` and ``steps_per_epoch`` are unused: episodes set the step."""
    val: ValConfig = field(default_factory=ValConfig)
    """Few-shot validation that picks best.pt."""
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/metatrain"))
    """Output folder, seed, device and speed options."""


    def __post_init__(self) -> None:
        check_ranges("", self, {"ways": (2, None), "shots": (1, None), "queries": (1, None),
                                "episodes_per_epoch": (1, None)})
        if not 1 <= self.tasks_per_step <= self.episodes_per_epoch:
            raise UserError(f"need 1 <= tasks_per_step <= episodes_per_epoch, got tasks_per_step={self.tasks_per_step} "
                            f"and episodes_per_epoch={self.episodes_per_epoch}")

    @property
    def steps_per_epoch(self) -> int:
        return self.episodes_per_epoch // self.tasks_per_step


@dataclass
class MetaTraining(RunState):
    """One meta-training run (:class:`~fewshot_cam.training.state.RunState`) and its training split."""

    train: Split | None = None


def resolve_config(
    data: dict[str, Any], path: str | Path | None = None
) -> tuple[MetaTrainConfig, FewShotClassifier, dict[str, Any]]:
    """The run's config from the user's mapping ``data`` over the pretrained checkpoint it names.

    The checkpoint supplies the model and the data keys the user left out. Returns the config, the
    pretrained model (CPU) and its checkpoint dict. UserError for a missing or damaged checkpoint.
    """
    if not data.get("checkpoint"):
        raise UserError("metatrain needs a pretrained checkpoint (--checkpoint or the 'checkpoint' key)", path)
    checkpoint = str(Path(data["checkpoint"]).expanduser().resolve())
    model, ckpt = load_model(checkpoint)
    saved = (ckpt.get("config") or {}).get("data") or {}
    wanted = data.get("data") if isinstance(data.get("data"), dict) else {}
    if wanted.get("dataset", saved.get("dataset")) != saved.get("dataset"):
        saved = {}  # another dataset: none of the checkpoint's data settings apply (as in eval)
    known = {f.name for f in fields(DataConfig)}
    from_checkpoint = {"data": {k: v for k, v in saved.items() if k in known}, "model": ckpt["model_config"]}
    # from_dict fills a partly given section from its type's defaults, not from this config's
    # (optim.lr 0.001 here), so start from the whole default config.
    base = merge(to_dict(MetaTrainConfig()), from_checkpoint)
    cfg = from_dict(MetaTrainConfig, merge(merge(base, data), {"checkpoint": checkpoint}), path=path)
    if cfg.model != from_dict(ModelConfig, ckpt["model_config"], where="model_config", path=checkpoint):
        raise UserError(f"the model comes from the checkpoint ({ckpt['model_config']}); "
                        "remove the 'model' settings", path)
    return cfg, model, ckpt


def native_episodes(split: Split, ways: int, shots: int, queries: int, n: int, seed: int) -> torch.Tensor:
    return EpisodeSampler(split, ways, shots, queries, seed).sample(n)


def learn2learn_episodes(split: Split, ways: int, shots: int, queries: int, n: int, seed: int) -> torch.Tensor:
    check_setting(split.class_sizes(), split.class_names, split.name, ways, shots, queries)
    return task_episodes(split.labels, ways, shots + queries, n, seed)


# name -> (split, ways, shots, queries, n, seed) -> (n, N, K+Q) indices into the split
SAMPLERS: Registry[Callable[..., torch.Tensor]] = Registry("sampler")
SAMPLERS.register("native", native_episodes, help="our vectorised EpisodeSampler")
SAMPLERS.register("learn2learn", learn2learn_episodes, help="learn2learn's TaskDataset (same seeding)")


def epoch_episodes(split: Split, cfg: MetaTrainConfig, epoch: int) -> torch.Tensor:
    """Epoch ``epoch``'s episodes, one row of E per optimiser step: (steps, E, N, K+Q)."""
    steps, seed = cfg.steps_per_epoch, epoch_seed(cfg.run.seed, epoch, 0)
    episodes = SAMPLERS.get(cfg.sampler)(split, cfg.ways, cfg.shots, cfg.queries, steps * cfg.tasks_per_step, seed)
    return episodes.view(steps, cfg.tasks_per_step, cfg.ways, cfg.shots + cfg.queries)


def episodic_loss(
    embed: nn.Module, x: torch.Tensor, shape: tuple[int, int, int], shots: int, metric: str,
    autocast: contextlib.AbstractContextManager = NO_AUTOCAST,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypical loss and accuracy of E episodes embedded in one pass.

    x: (E*N*(K+Q), 3, H, W), the images of indices (E, N, K+Q) flattened; shape: (E, N, K+Q).
    """
    with autocast:
        z = embed(x)  # (E*N*(K+Q), D)
    z = z.float().view(*shape, -1)  # (E, N, K+Q, D)
    return prototypical_loss(z[:, :, :shots], z[:, :, shots:], metric)


def meta_step(
    embed: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor, shape: tuple[int, int, int], shots: int, metric: str,
    autocast: contextlib.AbstractContextManager = NO_AUTOCAST,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on the mean prototypical loss of E episodes -> detached (loss, accuracy in [0, 1])."""
    loss, accuracy = episodic_loss(embed, x, shape, shots, metric, autocast)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.detach(), accuracy


class Embed(nn.Module):
    """``forward(x) = model.embed(x)``, (B, 3, H, W) -> (B, C): the module DDP wraps."""

    def __init__(self, model: FewShotClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def train_one_epoch(state: MetaTraining, epoch: int, autocast: contextlib.AbstractContextManager) -> dict[str, float]:
    """Train one epoch (``epoch`` 1-based) -> means over steps and ranks: loss, train_acc (%)."""
    cfg = state.cfg
    episodes = epoch_episodes(state.train, cfg, epoch)  # (steps, E, N, K+Q)

    def step(i: int, local: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x, _ = make_batch(state.data, local.flatten(), state.device, generator)  # (E'*N*(K+Q), 3, H, W)
        loss, accuracy = meta_step(
            state.forward, state.optimizer, state.scheduler, x, tuple(local.shape), cfg.shots, cfg.metric, autocast
        )
        return {"loss": loss, "train_acc": 100.0 * accuracy}

    return run_epoch(state, episodes, step, ("loss", "train_acc"), epoch)


def setup(cfg: MetaTrainConfig, model: FewShotClassifier, class_names: tuple[str, ...], device: torch.device,
          info: distributed.DistInfo) -> MetaTraining:
    """Load the splits, move the pretrained ``model`` to ``device``, build optimiser and schedule.

    The head is frozen (ProtoNet does not use it): the checkpoints keep the pretrained head weights.
    """
    train, val = load_data(cfg, info)
    check_episode_count(cfg.steps_per_epoch * cfg.tasks_per_step, train.name, cfg.ways, cfg.shots, cfg.queries)
    channels_last = cfg.run.channels_last and device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    model.head.requires_grad_(False)
    if cfg.run.compile:
        model.backbone.compile()  # in place: state_dict keys unchanged
    optimizer = build_optimizer(model, cfg.optim)
    steps, step_images = cfg.steps_per_epoch, cfg.tasks_per_step * cfg.ways * (cfg.shots + cfg.queries)
    images = torch.from_numpy(train.images)  # (N, H, W, 3) uint8
    data = EpochInputs(images.to(device) if cfg.data.on_device else images, torch.from_numpy(train.labels).to(device),
                       step_images, steps, cfg.augment, cfg.run.seed, channels_last)
    return MetaTraining(
        cfg, device, info, model, distributed.wrap(Embed(model), device, info), optimizer,
        build_scheduler(optimizer, cfg.optim, steps), data, class_names,
        val, sample_episodes(val, cfg.val) if val is not None else None, train=train,
    )


def fit(cfg: MetaTrainConfig, model: FewShotClassifier, class_names: tuple[str, ...], device: torch.device,
        info: distributed.DistInfo = distributed.DistInfo(), resume_run: bool = False) -> MetaTraining:
    """Meta-train the pretrained ``model`` per ``cfg`` into ``cfg.run.out``; returns the final state."""
    with open_run(cfg.run.out, info, cfg.run.tensorboard, resume_run) as run_dir:
        state = setup(cfg, model, class_names, device, info)
        start_run(state, run_dir, resume_run)
        autocast = autocast_for(device, cfg.run.amp)
        run_epochs(state, run_dir, lambda epoch: train_one_epoch(state, epoch, autocast))
    return state


def class_names_of(ckpt: dict) -> tuple[str, ...]:
    """The pretrained checkpoint's base-class names (numbers when it saved none)."""
    names = ckpt.get("class_names") or [str(c) for c in range(int(ckpt["num_classes"]))]
    return tuple(names)
