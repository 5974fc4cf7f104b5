"""The check's images: the built-in synthetic benchmark drawn at size, in parallel, kept in ``work``.

A split of ``per_class`` images per class is drawn as ``per_class / chunk`` independent draws of
``chunk`` images per class, draw k with ``SynthConfig(seed=k)``, so every image is distinct and the
draws run in parallel (one process each, spawned: a CUDA context is never forked). Drawn splits are
saved as ``.npy`` files under ``work`` and reused by later stages and reruns. Random weights and these
images stand in for a trained model on miniImageNet: the timings do not depend on what is drawn.
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fewshot_cam.bench._api import (
    ModelConfig,
    Split,
    SynthConfig,
    atomic_write,
    build_model,
    generate_split,
    make_episodes,
)
from fewshot_cam.bench.context import Context

WAYS, SHOTS, QUERIES = 5, 1, 15


def _draw(split: str, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    s = generate_split(split, cfg)
    return s.images, s.labels, s.masks, s.class_names


def draw_split(split: str, classes: tuple[int, int, int], per_class: int, size: int, chunk: int, workers: int) -> Split:
    """``split`` of a synthetic set with ``classes`` (train, val, test) classes, ``per_class`` images each."""
    if per_class % chunk:
        raise ValueError(f"per_class {per_class} is not a multiple of the draw chunk {chunk}")
    configs = [
        SynthConfig(seed=k, image_size=size, images_per_class=chunk, classes=classes) for k in range(per_class // chunk)
    ]
    if workers > 1 and len(configs) > 1:
        with ProcessPoolExecutor(min(workers, len(configs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_draw, [split] * len(configs), configs))
    else:
        parts = [_draw(split, cfg) for cfg in configs]
    labels = np.concatenate([p[1] for p in parts])
    order = np.argsort(labels, kind="stable")  # class by class, draw 0's images first
    images, masks = (np.concatenate([p[i] for p in parts])[order] for i in (0, 2))
    return Split(
        images, labels[order], parts[0][3], masks, name=f"synthetic-bench/{split}", source=f"{len(parts)} draws"
    )


def cached_split(ctx: Context, split: str, classes: tuple[int, int, int], per_class: int) -> Split:
    """:func:`draw_split` at the stage's image size, saved under ``ctx.work`` and read back next time."""
    s = ctx.sizes
    folder = ctx.work / f"synthetic-{split}-{'x'.join(map(str, classes))}-{per_class}-{s.image_size}px"
    if not (folder / "done").exists():
        drawn = draw_split(split, classes, per_class, s.image_size, s.draw_chunk, ctx.workers())
        folder.mkdir(parents=True, exist_ok=True)
        for key in ("images", "labels", "masks"):
            atomic_write(folder / f"{key}.npy", lambda f, a=getattr(drawn, key): np.save(f, a))
        atomic_write(folder / "classes.txt", "\n".join(drawn.class_names) + "\n")
        atomic_write(folder / "done", "")
    images, labels, masks = (np.load(folder / f"{key}.npy") for key in ("images", "labels", "masks"))
    names = tuple((folder / "classes.txt").read_text().split())
    return Split(images, labels, names, masks, name=f"synthetic-bench/{split}")


def eval_split(ctx: Context) -> Split:
    """The evaluation split: ``classes`` x ``per_class`` (20 x 600, as miniImageNet test)."""
    s = ctx.sizes
    return cached_split(ctx, "test", (1, 1, s.classes), s.per_class)


def eval_episodes(split: Split, n: int) -> torch.Tensor:
    """The first ``n`` of the check's seeded 5-way 1-shot 15-query episodes: (n, 5, 16) into ``split``."""
    return make_episodes(split, WAYS, SHOTS, QUERIES, n, seed=0).indices


def random_model(ctx: Context, num_classes: int = 64) -> torch.nn.Module:
    """The stage's backbone with seeded random weights, in eval mode on the device."""
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=ctx.sizes.backbone), num_classes).to(ctx.device).eval()


def write_mini_imagenet(root: Path, splits: dict[str, Split]) -> Path:
    """Write ``splits`` (train, val, test) as learn2learn's mini-ImageNet cache pickles under ``root``."""
    names = {"train": "train", "val": "validation", "test": "test"}
    root.mkdir(parents=True, exist_ok=True)
    for split, data in splits.items():
        class_dict = {name: idx.tolist() for name, idx in zip(data.class_names, data.class_indices())}
        record = {"image_data": np.ascontiguousarray(data.images), "class_dict": class_dict}
        atomic_write(
            root / f"mini-imagenet-cache-{names[split]}.pkl", lambda f, r=record: pickle.dump(r, f, protocol=4)
        )
    return root
