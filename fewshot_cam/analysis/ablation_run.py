"""One background-ablation run: checkpoint -> split -> episodes -> masks -> three conditions -> summary.

Checkpoint, data and episode resolution are ``fewshot_cam.evaluation.run``'s (the same rules as
``fewshot-cam eval``: the checkpoint's data by default, an episode file, seeded draws, or the shipped
frozen file). Masks are the dataset's ground truth ("gt"), a mask file (``FILE.npz`` from ``data boxes``:
episodes are then drawn only from the images that have a mask) or an attribution map of a mask model
thresholded at ``mask_threshold`` ("cam", "gradcam", "gradcam++", "scorecam").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from fewshot_cam.analysis.ablation import CONDITIONS, FILLS, attribution_masks, compact, run_ablation, summarize
from fewshot_cam.analysis.attribution import METHODS as ATTRIBUTIONS
from fewshot_cam.data.checks import check_split_masks
from fewshot_cam.data.mask_file import is_mask_file, with_mask_file
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError, check_ranges
from fewshot_cam.evaluation.results import episodes_hash, markdown_table
from fewshot_cam.evaluation.run import (
    EvalRequest,
    choose_episodes,
    distinct_methods,
    ground_truth,
    reported_name,
    request_split,
)
from fewshot_cam.fewshot.episodic import check_methods
from fewshot_cam.models.checkpoint import load_model
from fewshot_cam.models.features import model_device
from fewshot_cam.stats import format_ci

FORMAT = "fewshot-cam-ablation/1"
MASK_SOURCES = ("gt", *ATTRIBUTIONS)
OWN_CAM_WARNING = (
    "masks come from the evaluated model's own {masks} maps (no --mask-model): a model's own CAM "
    "biases its own ablation (it removes exactly what that model looks at); prefer another model's maps"
)


@dataclass(frozen=True)
class AblationRequest:
    """What to ablate: ``episodes`` says which checkpoint, data and episodes (as for ``eval``)."""

    episodes: EvalRequest
    masks: str = "gt"
    mask_model: str | None = None
    mask_threshold: float = 0.5
    fill: str = "mean"
    cam_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.masks not in MASK_SOURCES and not is_mask_file(self.masks):
            raise UserError(f"unknown mask source '{self.masks}' (valid: {', '.join(MASK_SOURCES)}, or FILE.npz)")
        FILLS.get(self.fill)
        check_ranges("", self, {"mask_threshold": (0, 1, True, True), "cam_batch_size": (1, None)})

    @property
    def own_cam(self) -> bool:
        """True when the evaluated model's own maps decide what is foreground."""
        return self.masks != "gt" and not is_mask_file(self.masks) and self.mask_model is None


def foreground_masks(request: AblationRequest, split: Split, rows: np.ndarray, model, progress: bool) -> torch.Tensor:
    """(U, H, W) bool foreground masks of the split images ``rows``: ground truth or a mask model's maps."""
    if request.masks == "gt" or is_mask_file(request.masks):
        if split.masks is None:
            raise UserError(f"--masks gt needs ground-truth masks, but {split.name} has none "
                            f"(use --masks cam|gradcam|gradcam++|scorecam with --mask-model)", split.source or None)
        check_split_masks(split, rows)  # an all-empty or all-full mask has no background to ablate
        return torch.from_numpy(split.masks[rows])
    mask_model = model
    if request.mask_model is not None:
        mask_model = load_model(request.mask_model, map_location=model_device(model))[0]
    images = split.images[rows]
    return attribution_masks(mask_model, images, request.masks, request.mask_threshold, request.cam_batch_size,
                             progress)


def run_background_ablation(request: AblationRequest, device: torch.device, progress: bool = False) -> dict:
    """Run the three conditions on the chosen episodes -> the JSON record: the settings, ``conditions``
    (original/foreground/background -> [{method, mean, ci95, per_episode}]), ``differences`` and
    ``reliance`` (see ``analysis.ablation.summarize``)."""
    ev = request.episodes
    requested = check_methods(ev.settings().methods)  # None: the protocol's (fewshot-cam: the default four)
    model, ckpt = load_model(ev.checkpoint, backbone=ev.backbone, map_location=device)
    methods = distinct_methods(requested, ckpt)
    split, dataset, image_size = request_split(ckpt, ev)
    eligible = None
    if is_mask_file(request.masks):  # episodes only from images with a mask
        split, eligible = with_mask_file(split, request.masks)
    episodes = choose_episodes(split, ev)
    rows, local = compact(episodes.indices)
    masks = foreground_masks(request, split, rows, model, progress)
    results = run_ablation(model, split.images[rows], masks, local, episodes.shots, methods, request.fill,
                           ev.feature_batch_size, ev.seed, progress)
    results = {
        c: {reported_name(m, ckpt): acc for m, acc in r.items()} for c, r in results.items()
    }  # baseline++ or not
    settings = {
        "format": FORMAT, "ways": episodes.ways, "shots": episodes.shots, "queries": episodes.queries,
        "n_episodes": episodes.n, "episode_file": None if episodes.path is None else str(episodes.path),
        "seed": ev.seed, "fingerprint": episodes.fingerprint, "episodes_hash": episodes_hash(episodes.indices),
        "checkpoint": str(ev.checkpoint), "dataset": dataset, "split": ev.split, "image_size": image_size,
        "masks": request.masks, "mask_model": request.mask_model, "mask_threshold": request.mask_threshold,
        "fill": request.fill, "foreground_fraction": float(masks.float().mean()),
        "eligible_per_class": eligible,
        "ground_truth": ground_truth(ckpt, ev) if request.masks == "gt" else None,
    }
    return {**settings, **summarize(results, episodes.ways)}


def format_ablation(records: Mapping[str, dict]) -> str:
    """One table: a row per condition (and per paired difference, and the BRI), a column per model/method."""
    labels = [(label, i, e["method"])
              for label, r in records.items() for i, e in enumerate(r["conditions"]["original"])]
    header = ["condition"] + [m if len(records) == 1 else f"{label} {m}" for label, _, m in labels]
    rows = [[c] + [str_ci(records[label]["conditions"][c][i]) for label, i, _ in labels] for c in CONDITIONS]
    for key in records[labels[0][0]]["differences"]:
        rows.append([key] + [str_ci(records[label]["differences"][key][i], sign=True) for label, i, _ in labels])
    bri = [records[label]["reliance"][m] for label, _, m in labels]
    rows.append(["BRI"] + ["n/a" if v is None else f"{v:.3f}" for v in bri])
    first = next(iter(records.values()))
    head = (f"{first['ways']}-way {first['shots']}-shot {first['queries']}-query, {first['n_episodes']} episodes of "
            f"{first['dataset']}/{first['split']}; masks {first['masks']}"
            + (f" ({first['ground_truth']})" if first.get("ground_truth") else "") + f", fill {first['fill']}")
    return head + "\n\n" + markdown_table(header, rows)


def str_ci(entry: dict, sign: bool = False) -> str:
    return format_ci(entry["mean"], entry["ci95"], signed=sign)
