"""The ablation's indices, each over the same episodes with a 95% CI.

- Accuracy per condition: mean +- t-interval over episodes (``stats.mean_ci95``), and the paired
  difference of each condition with ``original`` (``evaluation.paired.compare_paired``).
- **BG-gap** (Xiao et al., ICLR 2021) = acc(mixed-same) - acc(mixed-rand): how much a matching background
  helps; paired over episodes.
- **Background-following rate**: the share of ``mixed-rand`` queries predicted as the class whose
  background they carry (chance 100 / ways); mean +- t-interval over episodes.
- **BRI** (background-reliance index) = (acc_bg - chance) / (acc_orig - chance), chance = 100 / ways, on
  the ``background`` condition: 0 when the background alone is at chance, 1 when it keeps all of the
  original accuracy. A ratio is only meaningful when its denominator is clearly non-zero, so BRI is
  reported only where the original accuracy's 95% CI lies at least ``BRI_MARGIN`` points above chance;
  otherwise it is None with the reason. Its 95% CI is a percentile bootstrap over episodes (resampling
  the episodes, with the original and background accuracies of an episode kept together), seeded.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from fewshot_cam.evaluation.paired import compare_paired
from fewshot_cam.evaluation.results import MethodResult
from fewshot_cam.stats import mean_ci95

BRI_MARGIN = 5.0
"""Points above chance the lower end of the original accuracy's 95% CI must reach for a BRI."""
BOOTSTRAP = 2000
"""Bootstrap resamples of the BRI's CI."""


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def paired_difference(method: str, a: np.ndarray, b: np.ndarray) -> dict:
    """Paired a - b over the same episodes, JSON-ready: mean, ci95, t-test and Wilcoxon p-values."""
    p = compare_paired(a, b)
    return {"method": method, "mean": p.mean_diff, "ci95": p.ci95,
            "t_pvalue": _finite(p.t_pvalue), "wilcoxon_pvalue": _finite(p.wilcoxon_pvalue)}


def reliance_index(acc_background: float, acc_original: float, ways: int) -> float | None:
    """BRI = (acc_bg - chance) / (acc_orig - chance), chance = 100 / ways; None when acc_orig == chance."""
    chance = 100.0 / ways
    if abs(acc_original - chance) < 1e-9:
        return None
    return (acc_background - chance) / (acc_original - chance)


def bri(background: np.ndarray, original: np.ndarray, ways: int, seed: int = 0) -> dict:
    """``{"value", "ci95": [low, high], "reason"}`` from per-episode accuracies (E,) of the same episodes.
    value and ci95 are None, and ``reason`` says why, when the original accuracy is not clearly above chance."""
    chance, orig = 100.0 / ways, mean_ci95(original)
    if orig.mean - orig.ci95 < chance + BRI_MARGIN:
        reason = (f"n/a: original accuracy {orig.mean:.2f} +- {orig.ci95:.2f} is not clearly above chance "
                  f"{chance:.2f} (needs its 95% CI >= {BRI_MARGIN:g} points above)")
        return {"value": None, "ci95": None, "reason": reason}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(original), (BOOTSTRAP, len(original)))  # (B, E) resampled episodes
    boot = (background[draws].mean(1) - chance) / (original[draws].mean(1) - chance)
    low, high = np.percentile(boot, [2.5, 97.5])
    value = reliance_index(float(background.mean()), float(original.mean()), ways)
    return {"value": value, "ci95": [float(low), float(high)], "reason": None}


def summarize(results: dict[str, dict[str, dict[str, np.ndarray]]], ways: int, seed: int = 0) -> dict:
    """JSON-ready summary of ``analysis.ablation.run_ablation``'s per-episode results:

    ``conditions`` (condition -> [{method, mean, ci95, per_episode}]), ``differences`` ("<c>-original" ->
    paired differences), ``reliance`` (method -> BRI dict, when ``background`` ran), ``bg_gap`` (method ->
    paired mixed-same - mixed-rand, when both ran) and ``background_following`` (method -> {mean, ci95,
    per_episode, chance}, when ``mixed-rand`` ran).
    """
    acc = {c: {m: r["accuracy"] for m, r in per.items()} for c, per in results.items()}
    methods = list(acc["original"])
    out: dict = {
        "conditions": {c: [asdict(MethodResult.from_accuracies(m, acc[c][m])) for m in methods] for c in acc},
        "differences": {f"{c}-original": [paired_difference(m, acc[c][m], acc["original"][m]) for m in methods]
                        for c in acc if c != "original"},
    }
    if "background" in acc:
        out["reliance"] = {m: bri(acc["background"][m], acc["original"][m], ways, seed) for m in methods}
    if "mixed-same" in acc and "mixed-rand" in acc:
        out["bg_gap"] = {m: paired_difference(m, acc["mixed-same"][m], acc["mixed-rand"][m]) for m in methods}
    if "mixed-rand" in acc:
        out["background_following"] = {
            m: {
                **asdict(MethodResult.from_accuracies(m, results["mixed-rand"][m]["following"])),
                "chance": 100.0 / ways,
            }
            for m in methods
        }
    return out
