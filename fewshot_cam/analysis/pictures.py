"""What the analysis writes: image / heat-map overlay grids, the grouped bar chart of the ablation
conditions (drawn with ``matplotlib.figure.Figure``: no pyplot global state, no display needed), and
JSON records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Alpha-blend a colour-mapped heat map over an image: (H, W, 3) uint8, (H, W) in [0, 1] -> (H, W, 3) in [0, 1]."""
    colours = matplotlib.colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3]  # (H, W, 3)
    return (1.0 - alpha) * image.astype(np.float64) / 255.0 + alpha * colours


def save_cam_grid(
    path: str | Path,
    images: np.ndarray,
    columns: Mapping[str, np.ndarray],
    masks: np.ndarray | None = None,
    row_titles: Sequence[str] | None = None,
    alpha: float = 0.5,
) -> Path:
    """One row per image: the image, one overlay per entry of ``columns`` (title -> maps (B, H, W) in
    [0, 1]), and the ground-truth mask when given. images: (B, H, W, 3) uint8; masks: (B, H, W) bool."""
    titles = ["image", *columns] + (["mask"] if masks is not None else [])
    rows, cols = len(images), len(titles)
    fig = Figure(figsize=(1.8 * cols, 1.8 * rows + 0.3), dpi=100)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for r, image in enumerate(images):
        panels = [image / 255.0] + [overlay(image, maps[r], alpha) for maps in columns.values()]
        if masks is not None:
            panels.append(masks[r].astype(np.float64))
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        if row_titles is not None:
            axes[r, 0].set_ylabel(row_titles[r], fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def save_condition_bars(path: str | Path, record: dict, title: str = "") -> Path:
    """Grouped bars: one group per (model, method), one bar per condition that ran, 95% CI error bars, and
    a dashed line at chance. record: ``analysis.ablation_run.run_background_ablation``'s output."""
    models, conditions = record["models"], record["condition_names"]
    groups = []  # (label, {condition: {mean, ci95}})
    for label, summary in models.items():
        for i, entry in enumerate(summary["conditions"]["original"]):
            name = entry["method"] if len(models) == 1 else f"{label}\n{entry['method']}"
            groups.append((name, {c: summary["conditions"][c][i] for c in conditions}))
    width = 0.8 / len(conditions)
    fig = Figure(figsize=(max(5.0, 0.35 * len(conditions) * len(groups) + 2.0), 3.8), dpi=100)
    ax = fig.subplots()
    x = np.arange(len(groups))
    for j, condition in enumerate(conditions):
        means = [g[1][condition]["mean"] for g in groups]
        cis = [g[1][condition]["ci95"] for g in groups]
        ax.bar(x + (j - (len(conditions) - 1) / 2) * width, means, width, yerr=cis, capsize=2, label=condition)
    ax.axhline(100.0 / record["ways"], color="black", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x)
    ax.set_xticklabels([g[0] for g in groups], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"{record['dataset']}/{record['split']}, fill {record['fill']}", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12 if len(models) == 1 else -0.2), ncol=4)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


