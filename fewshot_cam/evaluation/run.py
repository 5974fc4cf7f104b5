"""One evaluation run: checkpoint -> split -> episodes -> features (once) -> every method -> result.

The data defaults to the checkpoint's own (``ckpt["config"]["data"]``: dataset, root, image_size and
the read options). Another dataset than the checkpoint's (cross-domain evaluation: a miniImageNet
checkpoint on CUB's test split) takes none of them: its root and options come from the request, the
image size from the checkpoint (the backbone's input size; the number of classes plays no part).
episodes come from a given file, else from ``n`` seeded draws, else from the shipped frozen file for
this split and setting (:func:`find_shipped_episodes`), else from ``DEFAULT_EPISODES`` draws with seed 0.

A protocol (:mod:`fewshot_cam.evaluation.protocols`) supplies the number of episodes, the queries, the
normalisation, the support augmentation and the methods wherever the request leaves them None. The
features of the images the episodes use are extracted once; with ``support_augment`` A, the distinct
support images' A augmented copies are extracted once more (:mod:`.support_augment`); the normalisation
(:mod:`fewshot_cam.fewshot.normalize`) then acts on that one feature matrix, before every method. CL2N's
base mean costs one more pass, over the base (train) split of the checkpoint's own dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from fewshot_cam.data.datasets import detect_layout, load_split
from fewshot_cam.data.episodes import EpisodeSet, find_shipped_episodes, load_episode_file, make_episodes
from fewshot_cam.data.options import OPTION_KEYS
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError, check_ranges
from fewshot_cam.evaluation.protocols import Settings, resolve
from fewshot_cam.evaluation.results import EvalResult, MethodResult, episodes_hash
from fewshot_cam.evaluation.support_augment import augmented_features, checkpoint_augmentation, expand_support
from fewshot_cam.fewshot.episodic import check_methods, evaluate_episodes
from fewshot_cam.fewshot.normalize import NEEDS_BASE_MEAN, base_mean, check_normalization, normalize_features
from fewshot_cam.models.checkpoint import final_checkpoint, load_model
from fewshot_cam.models.features import extract_features

DEFAULT_EPISODES = 2000
DEFAULT_QUERIES = 15
COSINE_CLASSIFIER = ("baseline++", "cosine-finetune")


def reported_name(method: str, ckpt: dict) -> str:
    """The name a result carries. Chen et al.'s Baseline++ pretrains with the cosine classifier and
    fine-tunes one on the support set; so ``baseline++`` / ``cosine-finetune`` (the same fine-tuning)
    is reported as "baseline++" only for a checkpoint pretrained with ``model.head: cosine``, and as
    "cosine-finetune" for any other."""
    if method not in COSINE_CLASSIFIER:
        return method
    return "baseline++" if (ckpt.get("model_config") or {}).get("head") == "cosine" else "cosine-finetune"


def distinct_methods(methods: list[str], ckpt: dict) -> list[str]:
    """The requested methods, without one whose reported name repeats an earlier one's."""
    seen: set[str] = set()
    out = []
    for method in methods:
        if reported_name(method, ckpt) not in seen:
            seen.add(reported_name(method, ckpt))
            out.append(method)
    return out


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate; None means "from the checkpoint" (data), "from the episode file" (setting) or
    "from the protocol" (episodes, queries, methods, normalize, support_augment)."""

    checkpoint: str
    ways: int | None = None
    shots: int | None = None
    queries: int | None = None
    episodes: int | None = None
    seed: int = 0
    episode_file: str | None = None
    methods: tuple[str, ...] | None = None
    split: str = "test"
    dataset: str | None = None
    root: str | None = None
    image_size: int | None = None
    backbone: str | None = None
    batch_size: int = 500
    feature_batch_size: int = 256
    data_options: Mapping[str, Any] | None = None
    """Read options given explicitly (``--set data.KEY=VALUE``); they override the checkpoint's."""
    protocol: str = "fewshot-cam"
    """A name in :data:`~fewshot_cam.evaluation.protocols.PROTOCOLS`: the defaults of the None settings."""
    normalize: str | None = None
    """Feature normalisation before every method: none, l2 or cl2n."""
    support_augment: int | None = None
    """Augmented copies per support image with the checkpoint's training augmentation (0: none)."""

    def settings(self) -> Settings:
        """The protocol's settings with this request's explicit ones in their place."""
        return resolve(self.protocol, episodes=self.episodes, queries=self.queries, normalize=self.normalize,
                       support_augment=self.support_augment, methods=self.methods,
                       episode_file=self.episode_file is not None)

    def __post_init__(self) -> None:
        rules = {"ways": (2, None), "shots": (1, None), "queries": (1, None), "episodes": (1, None),
                 "seed": (0, 2**63 - 1), "image_size": (8, 4096), "batch_size": (1, None),
                 "feature_batch_size": (1, None)}
        check_ranges("", self, {k: rule for k, rule in rules.items() if getattr(self, k) is not None})


def data_settings(ckpt: dict, request: EvalRequest) -> tuple[str, str | None, int]:
    """(dataset, root, image_size): the request's where given, else the checkpoint's data section."""
    saved = (ckpt.get("config") or {}).get("data") or {}
    dataset = request.dataset or saved.get("dataset")
    if dataset is None:
        raise UserError("the checkpoint names no dataset (no config.data section); pass --dataset and --root",
                        request.checkpoint)
    same = dataset == saved.get("dataset")
    root = request.root if request.root is not None or not same else saved.get("root")
    image_size = request.image_size or saved.get("image_size") or 84
    return dataset, root, int(image_size)


def data_options(ckpt: dict, request: EvalRequest) -> dict[str, Any]:
    """The read options: the checkpoint's (for its own dataset only), overridden by the request's."""
    saved = (ckpt.get("config") or {}).get("data") or {}
    same = (request.dataset or saved.get("dataset")) == saved.get("dataset")
    base = {k: saved[k] for k in OPTION_KEYS if k in saved} if same else {}
    return {**base, **(request.data_options or {})}


def ground_truth(ckpt: dict, request: EvalRequest) -> str:
    """Where the split's masks come from: dataset and layout (for cub: segmentations or boxes, the crop)."""
    dataset, root, _ = data_settings(ckpt, request)
    return f"{dataset} {detect_layout(dataset, root, data_options(ckpt, request))}"


def request_split(ckpt: dict, request: EvalRequest) -> tuple[Split, str, int]:
    """(the split to evaluate on, its dataset name, the image size) for ``request``."""
    dataset, root, image_size = data_settings(ckpt, request)
    split = load_split(dataset, root, request.split, image_size, options=data_options(ckpt, request))
    return split, dataset, image_size


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


def episodes_from(episodes: EpisodeSet, request: EvalRequest) -> str:
    """How the episodes were chosen, in words (the JSON's ``episodes_from``)."""
    if request.episode_file is not None:
        return "episode file"
    if episodes.path is not None:
        return "shipped frozen episode file"
    return (f"drawn with seed {request.seed} (the same episodes as `fewshot-cam episodes make --n {episodes.n} "
            f"--seed {request.seed}`)")


def base_split_mean(model: torch.nn.Module, ckpt: dict, request: EvalRequest, progress: bool):
    """CL2N's base mean: the mean feature of every image of the checkpoint's own dataset's train split
    -> ((D,), a description of that split)."""
    saved = ((ckpt.get("config") or {}).get("data") or {}).get("dataset")
    own = request.dataset is None or request.dataset == saved
    base = replace(request, split="train", image_size=data_settings(ckpt, request)[2])
    if not own:  # cross-domain: the base classes are the checkpoint's, with its root and options
        base = replace(base, dataset=None, root=None, data_options=None)
    split, dataset, _ = request_split(ckpt, base)
    features = extract_features(model, split.images, batch_size=request.feature_batch_size, progress=progress)
    info = {"dataset": dataset, "split": "train", "n_images": len(features), "fingerprint": split.fingerprint()}
    return base_mean(features), info


def episode_matrix(model, ckpt: dict, request: EvalRequest, split: Split, episodes: EpisodeSet,
                   settings: Settings, progress: bool) -> tuple[torch.Tensor, torch.Tensor, int, dict | None]:
    """(features (U', D) normalised, indices (E, N, K' + Q) into them, K' support features per class,
    the base split's description for CL2N or None)."""
    features, indices = episode_features(model, split, episodes.indices, request.feature_batch_size, progress)
    shots = episodes.shots
    if settings.support_augment > 0:
        used = torch.unique(episodes.indices)  # the split rows behind the features' rows
        rows, indices = expand_support(indices, shots, len(features), settings.support_augment)
        images = torch.from_numpy(np.ascontiguousarray(split.images[used[rows].numpy()]))  # (S, H, W, 3)
        copies = augmented_features(model, images, settings.support_augment,
                                    checkpoint_augmentation(ckpt, request.checkpoint), request.seed,
                                    request.feature_batch_size, progress)  # (S, A, D)
        features, shots = torch.cat([features, copies.flatten(0, 1)]), shots * settings.support_augment
    mean, base = None, None
    if settings.normalize in NEEDS_BASE_MEAN:
        mean, base = base_split_mean(model, ckpt, request, progress)
    return normalize_features(features, settings.normalize, mean), indices, shots, base


def run_evaluation(request: EvalRequest, device: torch.device, progress: bool = False) -> EvalResult:
    """Evaluate the methods of the checkpoint's frozen backbone on the chosen episodes, under the request's
    protocol with its explicit settings in place of the protocol's."""
    settings = request.settings()
    check_normalization(settings.normalize)
    requested = check_methods(settings.methods)
    model, ckpt = load_model(request.checkpoint, backbone=request.backbone, map_location=device)
    methods = distinct_methods(requested, ckpt)
    split, dataset, _ = request_split(ckpt, request)
    episodes = choose_episodes(split, replace(request, episodes=settings.episodes, queries=settings.queries))
    features, indices, shots, base = episode_matrix(model, ckpt, request, split, episodes, settings, progress)
    accuracies = evaluate_episodes(features, indices, shots, methods, request.batch_size, request.seed, progress)
    return EvalResult(
        ways=episodes.ways,
        shots=episodes.shots,
        queries=episodes.queries,
        n_episodes=episodes.n,
        episode_file=None if episodes.path is None else str(episodes.path),
        seed=request.seed,
        fingerprint=episodes.fingerprint,
        episodes_hash=episodes_hash(episodes.indices),
        checkpoint=str(
            final_checkpoint(request.checkpoint) if Path(request.checkpoint).is_dir() else request.checkpoint
        ),
        dataset=dataset,
        split=request.split,
        results=tuple(MethodResult.from_accuracies(reported_name(m, ckpt), accuracies[m]) for m in methods),
        train_seed=training_seed(ckpt),
        train_config=ckpt.get("config"),
        protocol=settings.protocol,
        normalize=settings.normalize,
        support_augment=settings.support_augment,
        episodes_from=episodes_from(episodes, request),
        overrides=list(settings.overrides),
        base_split=base,
    )


def training_seed(ckpt: dict) -> int | None:
    """The checkpoint's training seed (``config.run.seed``), None when it records none."""
    seed = ((ckpt.get("config") or {}).get("run") or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None
