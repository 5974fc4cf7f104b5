"""One evaluation run: checkpoint -> split -> episodes -> features (once) -> every method -> result.

The data defaults to the checkpoint's own (``ckpt["config"]["data"]``: dataset, root, image_size);
episodes come from a given file, else from ``n`` seeded draws, else from the shipped frozen file for
this split and setting (:func:`find_shipped_episodes`), else from ``DEFAULT_EPISODES`` draws with seed 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.episodes import EpisodeSet, find_shipped_episodes, load_episode_file, make_episodes
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.results import EvalResult, MethodResult, episodes_hash
from fewshot_cam.fewshot.episodic import DEFAULT_METHODS, check_methods, evaluate_episodes
from fewshot_cam.models.checkpoint import load_model
from fewshot_cam.models.features import extract_features

DEFAULT_EPISODES = 2000
DEFAULT_QUERIES = 15


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate; None means "from the checkpoint" (data) or "from the episode file" (setting)."""

    checkpoint: str
    ways: int | None = None
    shots: int | None = None
    queries: int | None = None
    episodes: int | None = None
    seed: int = 0
    episode_file: str | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    split: str = "test"
    dataset: str | None = None
    root: str | None = None
    image_size: int | None = None
    backbone: str | None = None
    batch_size: int = 500
    feature_batch_size: int = 256


def data_settings(ckpt: dict, request: EvalRequest) -> tuple[str, str | None, int]:
    """(dataset, root, image_size): the request's where given, else the checkpoint's data section."""
    saved = (ckpt.get("config") or {}).get("data") or {}
    dataset = request.dataset or saved.get("dataset")
    if dataset is None:
        raise UserError("the checkpoint names no dataset (no config.data section); pass --dataset and --root",
                        request.checkpoint)
    same = dataset == saved.get("dataset")
    root = request.root if request.root is not None or not same else saved.get("root")
    image_size = request.image_size or (saved.get("image_size") if same else None) or 84
    return dataset, root, int(image_size)


def choose_episodes(split: Split, request: EvalRequest) -> EpisodeSet:
    """The episodes to evaluate on (see the module docstring for the order of preference)."""
    if request.episode_file is not None:
        episodes = load_episode_file(request.episode_file, split)
        for key in ("ways", "shots", "queries"):
            asked, found = getattr(request, key), getattr(episodes, key)
            if asked is not None and asked != found:
                message = f"--{key} {asked} does not match the episode file's {key}={found}"
                raise UserError(message, request.episode_file)
        return episodes
    if request.ways is None or request.shots is None:
        raise UserError("give --ways and --shots (or an --episode-file)")
    queries = DEFAULT_QUERIES if request.queries is None else request.queries
    if request.episodes is not None:
        return make_episodes(split, request.ways, request.shots, queries, request.episodes, request.seed)
    shipped = find_shipped_episodes(split, request.ways, request.shots, queries)
    if shipped is not None:
        return load_episode_file(shipped, split)
    return make_episodes(split, request.ways, request.shots, queries, DEFAULT_EPISODES, request.seed)


def episode_features(model: torch.nn.Module, split: Split, indices: torch.Tensor, batch_size: int, progress: bool):
    """Features of the images the episodes use, each computed once: (U, D), and indices remapped into them."""
    used, remapped = torch.unique(indices, return_inverse=True)  # (U,), (E, N, K+Q)
    features = extract_features(model, split.images[used.numpy()], batch_size=batch_size, progress=progress)
    return features, remapped


def run_evaluation(request: EvalRequest, device: torch.device, progress: bool = False) -> EvalResult:
    """Evaluate ``request.methods`` of the checkpoint's frozen backbone on the chosen episodes."""
    methods = check_methods(request.methods)
    model, ckpt = load_model(request.checkpoint, backbone=request.backbone, map_location=device)
    dataset, root, image_size = data_settings(ckpt, request)
    split = load_split(dataset, root, request.split, image_size)
    episodes = choose_episodes(split, request)
    features, indices = episode_features(model, split, episodes.indices, request.feature_batch_size, progress)
    accuracies = evaluate_episodes(
        features, indices, episodes.shots, methods, request.batch_size, request.seed, progress
    )
    return EvalResult(
        ways=episodes.ways, shots=episodes.shots, queries=episodes.queries, n_episodes=episodes.n,
        episode_file=None if episodes.path is None else str(episodes.path), seed=request.seed,
        fingerprint=episodes.fingerprint, episodes_hash=episodes_hash(episodes.indices),
        checkpoint=str(request.checkpoint), dataset=dataset, split=request.split,
        results=tuple(MethodResult.from_accuracies(m, accuracies[m]) for m in methods),
    )
