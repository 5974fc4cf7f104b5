"""Stage d, the background analysis on the device: the ablation on 2,000 episodes with every fill and
condition, and CAM, Grad-CAM, Grad-CAM++ and Score-CAM on 1,000 images; times and peak memory
(``torch.cuda.max_memory_allocated``, reset before each measurement; None on the CPU).
"""

from __future__ import annotations

import numpy as np
import torch

from fewshot_cam.bench._api import (
    CAM_METHODS,
    CONDITIONS,
    FILLS,
    Swaps,
    attribute_images,
    choose_donors,
    classifier_scorer,
    compact,
    extract_features,
    run_ablation,
)
from fewshot_cam.bench.context import Context
from fewshot_cam.bench.data import SHOTS, eval_episodes, eval_split, random_model


def run(ctx: Context) -> None:
    s = ctx.sizes
    split = eval_split(ctx)
    indices = eval_episodes(split, s.episodes)[: s.method_episodes]
    donors = {c: choose_donors(split.labels, indices, CONDITIONS.get(c).donor, 0) for c in ("mixed-same", "mixed-rand")}
    rows, local = compact(indices, *(torch.from_numpy(r) for r, _ in donors.values()))  # images used, indices into them
    swaps = Swaps(dict(zip(donors, local[1:])), {c: torch.from_numpy(t) for c, (_, t) in donors.items()})
    images, masks = split.images[rows], torch.from_numpy(split.masks[rows])
    model = random_model(ctx)
    extract_features(model, images[:512])  # warm-up
    _, one = ctx.timed(extract_features, model, images)
    ctx.put("episodes", len(indices))
    ctx.put("images", len(images))
    ctx.put("one_extraction_s", round(one, 3))
    conditions = CONDITIONS.names()
    for fill in FILLS:
        ctx.reset_peak()
        results, seconds = ctx.timed(run_ablation, model, images, masks, local[0], SHOTS, ["protonet"], conditions,
                                     swaps, fill=fill)
        ctx.put(f"ablation_{fill}", {
            "seconds": round(seconds, 3), "over_one_extraction": round(seconds / one, 2), "peak_mib": ctx.peak_mib(),
            **{f"{c}_acc": round(float(np.mean(r["protonet"]["accuracy"])), 2) for c, r in results.items()},
        })
    cam_images = split.images[: s.cam_images]
    scorer = classifier_scorer(model)
    for method in CAM_METHODS:
        ctx.reset_peak()
        maps, seconds = ctx.timed(attribute_images, method, scorer, cam_images, ctx.device, batch_size=s.cam_batch_size)
        ctx.put(f"cam_{method}", {"images": len(cam_images), "seconds": round(seconds, 3),
                                  "images_per_s": round(len(cam_images) / seconds, 1), "peak_mib": ctx.peak_mib(),
                                  "finite": bool(torch.isfinite(maps).all())})
