"""One background-ablation run: checkpoints -> split -> episodes -> swaps -> masks -> conditions -> summary.

Checkpoint, data and episode resolution are ``fewshot_cam.evaluation.run``'s (the same rules as
``fewshot-cam eval``: the first checkpoint's data by default, an episode file, seeded draws, or the
shipped frozen file). Several checkpoints run on the same episodes, the same background swaps and
(with ground-truth masks or a ``--mask-model``) the same masks. Masks are the dataset's ground truth
("gt"), a mask file (``FILE.npz`` from ``data boxes``: episodes are then drawn only from the images
that have a mask) or an attribution map of a mask model thresholded at ``mask_threshold``.
Method names are reported as ``eval`` reports them (``baseline++`` only on a cosine-pretrained
checkpoint, else ``cosine-finetune``), by the first checkpoint's head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from fewshot_cam.analysis.ablation import (
    MODIFY,
    Swaps,
    attribution_masks,
    compact,
    run_ablation,
)
from fewshot_cam.analysis.ablation_masks import BAD_MASKS, check_masks, dilate_batched
from fewshot_cam.analysis.attribution import METHODS as ATTRIBUTIONS
from fewshot_cam.analysis.conditions import CONDITIONS, check_conditions, choose_donors
from fewshot_cam.analysis.fills import DEFAULT_FILL, FILLS
from fewshot_cam.analysis.reliance import summarize
from fewshot_cam.data.mask_file import is_mask_file, with_mask_file
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError, check_ranges
from fewshot_cam.evaluation.results import episodes_hash, markdown_table
from fewshot_cam.evaluation.run import (
    EvalRequest,
    choose_episodes,
    data_settings,
    distinct_methods,
    ground_truth,
    reported_name,
    request_split,
)
from fewshot_cam.fewshot.episodic import check_methods
from fewshot_cam.models.checkpoint import load_model
from fewshot_cam.stats import format_ci

FORMAT = "fewshot-cam-ablation/2"
MASK_SOURCES = ("gt", *ATTRIBUTIONS)
OWN_CAM_WARNING = (
    "masks come from the evaluated model's own {masks} maps (no --mask-model): a model's own CAM "
    "biases its own ablation (it removes exactly what that model looks at); prefer another model's maps"
)


@dataclass(frozen=True)
class AblationRequest:
    """What to ablate: ``episodes`` says which data and episodes (as for ``eval``; its checkpoint is the
    first of ``checkpoints``), ``checkpoints`` label -> checkpoint path."""

    episodes: EvalRequest
    checkpoints: tuple[tuple[str, str], ...] = ()
    masks: str = "gt"
    mask_model: str | None = None
    mask_threshold: float = 0.5
    mask_dilate: int = 0
    fill: str = DEFAULT_FILL
    conditions: tuple[str, ...] = tuple(CONDITIONS.names())
    modify: str = "queries"
    bad_masks: str = "error"
    cam_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.masks not in MASK_SOURCES and not is_mask_file(self.masks):
            raise UserError(f"unknown mask source '{self.masks}' (valid: {', '.join(MASK_SOURCES)}, or FILE.npz)")
        check_ranges("", self, {"cam_batch_size": (1, None)})
        FILLS.get(self.fill)
        check_conditions(list(self.conditions))
        if self.modify not in MODIFY:
            raise UserError(f"unknown --modify {self.modify!r} (valid: {', '.join(MODIFY)})")
        if self.bad_masks not in BAD_MASKS:
            raise UserError(f"unknown --bad-masks {self.bad_masks!r} (valid: {', '.join(BAD_MASKS)})")
        if not 0.0 < self.mask_threshold < 1.0:
            raise UserError(f"mask threshold must be in (0, 1), got {self.mask_threshold}")
        if self.mask_dilate < 0:
            raise UserError(f"--mask-dilate must be >= 0 pixels, got {self.mask_dilate}")
        if not self.checkpoints:
            object.__setattr__(self, "checkpoints", ((str(self.episodes.checkpoint), str(self.episodes.checkpoint)),))

    @property
    def own_cam(self) -> bool:
        """True when the evaluated model's own maps decide what is foreground."""
        return not self.from_data and self.mask_model is None

    @property
    def from_data(self) -> bool:
        """True when the masks are the split's own or a mask file's (not a model's maps)."""
        return self.masks == "gt" or is_mask_file(self.masks)


def _masks_for(request: AblationRequest, split: Split, rows: np.ndarray, model, device, progress) -> torch.Tensor:
    """(U, H, W) bool foreground masks of split images ``rows``, dilated: the ground truth, the
    ``--mask-model``'s maps, or (no mask model) ``model``'s own."""
    if request.from_data:
        raw = torch.from_numpy(split.masks[rows])
    else:
        mask_model = model if request.mask_model is None else load_model(request.mask_model, map_location=device)[0]
        raw = attribution_masks(mask_model, split.images[rows], request.masks, request.mask_threshold,
                                request.cam_batch_size, progress).cpu()
    return dilate_batched(raw, request.mask_dilate, device)


def _swaps(request: AblationRequest, split: Split, indices: torch.Tensor, usable, seed: int) -> dict[str, np.ndarray]:
    """Donor rows and targets (split rows) of each mixed condition that runs."""
    out = {}
    for c in check_conditions(list(request.conditions)):
        donor = CONDITIONS.get(c).donor
        if donor is not None:
            out[c] = choose_donors(split.labels, indices, donor, seed, usable)
    return out


@dataclass(frozen=True)
class Prepared:
    """What every model is ablated on: the images ``rows`` (U,) of the split, the usable episodes'
    ``indices`` (E', N, K+Q) and ``swaps`` in those rows, each model's masks (U, H, W), and the JSON
    ``bad_masks`` count and ``swaps`` (split rows)."""

    rows: np.ndarray
    indices: torch.Tensor
    swaps: Swaps
    masks: dict[str, torch.Tensor]
    record: dict


def prepare(request: AblationRequest, split: Split, dataset: str, root, episodes, models: dict, device,
            progress: bool = False) -> Prepared:
    """Validate masks (every ground-truth mask first, so that donors are drawn among usable images),
    choose the swaps, compute each model's masks (once when they are shared), drop unusable episodes."""
    usable = None
    if request.from_data:
        usable = check_masks(dilate_batched(split.masks, request.mask_dilate, device), np.arange(len(split.images)),
                             split, dataset, root, request.bad_masks, request.mask_dilate).numpy()
    donors = _swaps(request, split, episodes.indices, usable, request.episodes.seed)
    rows, local = compact(episodes.indices, *(torch.from_numpy(r) for r, _ in donors.values()))
    shared = None if request.own_cam else _masks_for(request, split, rows, None, device, progress)
    masks = {label: shared if shared is not None else _masks_for(request, split, rows, m, device, progress)
             for label, (m, _) in models.items()}
    ok = torch.ones(len(rows), dtype=torch.bool)
    for m in masks.values():
        ok &= check_masks(m, rows, split, dataset, root, request.bad_masks, request.mask_dilate)
    keep = ok[torch.stack(local)].flatten(2).all(-1).all(0)  # (E,) episodes whose slots and donors are usable
    swaps = Swaps({c: t[keep] for c, t in zip(donors, local[1:])},
                  {c: torch.from_numpy(target)[keep] for c, (_, target) in donors.items()})
    record = {
        "bad_masks": {"policy": request.bad_masks, "images": int((~ok).sum()), "episodes_skipped": int((~keep).sum())},
        "swaps": {"seed": request.episodes.seed, **{c: r[keep.numpy()].tolist() for c, (r, _) in donors.items()}},
    }
    return Prepared(rows, local[0][keep], swaps, masks, record)


def run_background_ablation(request: AblationRequest, device: torch.device, progress: bool = False) -> dict:
    """Every condition for every checkpoint on the chosen episodes -> the JSON record: the settings, the
    swaps, and ``models`` (label -> ``analysis.reliance.summarize`` output plus its checkpoint)."""
    ev = request.episodes
    requested = check_methods(ev.settings().methods)  # None: the protocol's (fewshot-cam: the default four)
    conditions = check_conditions(list(request.conditions))
    models = {label: load_model(path, backbone=ev.backbone, map_location=device) for label, path in request.checkpoints}
    first = next(iter(models.values()))[1]
    methods = distinct_methods(requested, first)
    split, dataset, image_size = request_split(first, ev)
    root = data_settings(first, ev)[1]  # for naming mask files in errors
    eligible = None
    if is_mask_file(request.masks):  # episodes only from images with a mask
        split, eligible = with_mask_file(split, request.masks)
    if request.from_data and split.masks is None:
        raise UserError(f"--masks gt needs ground-truth masks, but {split.name} has none "
                        f"(use --masks cam|gradcam|gradcam++|scorecam with --mask-model)", split.source or None)
    episodes = choose_episodes(split, ev)
    prep = prepare(request, split, dataset, root, episodes, models, device, progress)
    names = [reported_name(m, first) for m in methods]
    record = {
        **_settings(request, episodes, dataset, image_size, names, conditions),
        **prep.record,
        "models": {},
        "eligible_per_class": eligible,
        "ground_truth": ground_truth(first, ev) if request.masks == "gt" else None,
    }
    images = split.images[prep.rows]
    for label, (model, _) in models.items():
        results = run_ablation(model, images, prep.masks[label], prep.indices, episodes.shots, methods, conditions,
                               prep.swaps, request.fill, request.modify, ev.feature_batch_size, ev.batch_size,
                               ev.seed, progress)
        results = {c: {reported_name(m, first): r for m, r in per.items()} for c, per in results.items()}
        record["models"][label] = {"checkpoint": dict(request.checkpoints)[label],
                                   "foreground_fraction": float(prep.masks[label].float().mean()),
                                   **summarize(results, episodes.ways, ev.seed)}
    return record


def _settings(request: AblationRequest, episodes, dataset: str, image_size: int, methods, conditions) -> dict:
    ev = request.episodes
    return {
        "format": FORMAT, "ways": episodes.ways, "shots": episodes.shots, "queries": episodes.queries,
        "n_episodes": episodes.n, "episode_file": None if episodes.path is None else str(episodes.path),
        "seed": ev.seed, "fingerprint": episodes.fingerprint, "episodes_hash": episodes_hash(episodes.indices),
        "dataset": dataset, "split": ev.split, "image_size": image_size, "methods": methods,
        "condition_names": conditions, "modify": request.modify, "masks": request.masks,
        "mask_model": request.mask_model, "mask_threshold": request.mask_threshold,
        "mask_dilate": request.mask_dilate, "fill": request.fill,
    }


def _ci(entry: dict, sign: bool = False) -> str:
    return format_ci(entry["mean"], entry["ci95"], signed=sign)


def _bri(entry: dict) -> str:
    if entry["value"] is None:
        return "n/a"
    low, high = entry["ci95"]
    return f"{entry['value']:.3f} [{low:.3f}, {high:.3f}]"


def format_ablation(record: Mapping) -> str:
    """One table: a row per condition, then BG-gap, background-following and BRI; a column per model x method."""
    models = record["models"]
    cols = [(label, i, m) for label in models for i, m in enumerate(record["methods"])]
    header = ["condition"] + [m if len(models) == 1 else f"{label} {m}" for label, _, m in cols]
    rows = [[c] + [_ci(models[label]["conditions"][c][i]) for label, i, _ in cols] for c in record["condition_names"]]
    extra = [("bg_gap", "BG-gap (mixed-same − mixed-rand)", lambda e: _ci(e, sign=True)),
             ("background_following", f"background-following (chance {100 / record['ways']:.0f})", _ci),
             ("reliance", "BRI [95% CI]", _bri)]
    notes = []
    for key, name, fmt in extra:
        if key in models[cols[0][0]]:
            rows.append([name] + [fmt(models[label][key][m]) for label, _, m in cols])
            notes += [f"BRI of {label} {m}: {models[label][key][m]['reason']}" for label, _, m in cols
                      if key == "reliance" and models[label][key][m]["reason"]]
    skipped = record["bad_masks"]
    head = (
        f"{record['ways']}-way {record['shots']}-shot {record['queries']}-query, {record['n_episodes']} episodes of "
        f"{record['dataset']}/{record['split']}; masks {record['masks']}"
            + (f" ({record['ground_truth']})" if record.get("ground_truth") else "")
            + f" (dilated {record['mask_dilate']} px), "
        f"fill {record['fill']}, modified: {record['modify']}"
    )
    if skipped["episodes_skipped"]:
        head += f"; {skipped['images']} bad masks, {skipped['episodes_skipped']} episodes skipped"
    return "\n".join([head, "", markdown_table(header, rows), *notes])
