"""Few-shot validation during pretraining: ProtoNet on pooled features over fixed, seeded episodes.

Nearest centroid (Snell et al., "Prototypical Networks", NeurIPS 2017), scored by the same batched
evaluator as ``fewshot-cam eval`` (:func:`fewshot_cam.fewshot.episodic.evaluate_episodes`). The episodes
are drawn once from ``ValConfig.seed``, so every epoch (and every resumed run) scores the same ones;
the result is mean +- 95% CI over per-episode accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from fewshot_cam.data.episodes import EpisodeSampler, check_episode_count
from fewshot_cam.data.split import Split
from fewshot_cam.errors import check_ranges
from fewshot_cam.fewshot.episodic import evaluate_episodes
from fewshot_cam.models.features import extract_features
from fewshot_cam.stats import Interval, mean_ci95


@dataclass(frozen=True)
class ValConfig:
    """Few-shot validation on the val split, used to pick best.pt."""

    every: int = 1
    """Validate every this many epochs (and after the last); 0 disables validation (best.pt = last)."""
    split: str = "val"
    """Split of the dataset to validate on."""
    ways: int = 5
    """Classes per episode."""
    shots: int = 1
    """Support images per class."""
    queries: int = 15
    """Query images per class."""
    episodes: int = 300
    """Number of episodes."""
    seed: int = 0
    """Seed of the episode sampler (the same episodes every epoch)."""
    metric: Literal["euclidean", "cosine"] = "euclidean"
    """ProtoNet distance."""
    batch_size: int = 256
    """Images per forward pass during feature extraction."""

    def __post_init__(self) -> None:
        check_ranges("val", self, {"every": (0, None), "ways": (2, None), "shots": (1, None), "queries": (1, None),
                                   "episodes": (1, None), "seed": (0, 2**63 - 1), "batch_size": (1, None)})


def sample_episodes(split: Split, cfg: ValConfig) -> torch.Tensor:
    """The fixed validation episodes: (E, N, K+Q) indices into ``split`` (their memory checked first)."""
    check_episode_count(cfg.episodes, split.name, cfg.ways, cfg.shots, cfg.queries)
    sampler = EpisodeSampler(split, cfg.ways, cfg.shots, cfg.queries, cfg.seed)
    return sampler.sample(cfg.episodes)


def validate(model: nn.Module, split: Split, episodes: torch.Tensor, cfg: ValConfig) -> Interval:
    """Embed the whole split once with ``model`` (eval mode), then score the episodes: mean +- ci95 (%)."""
    features = extract_features(model, split.images, batch_size=cfg.batch_size)  # (N, D)
    method = "protonet" if cfg.metric == "euclidean" else "protonet-cosine"
    accuracy = evaluate_episodes(features.float(), episodes, cfg.shots, [method], batch_size=100)[method]
    return mean_ci95(accuracy)
