"""The GPU check's report: ``report.json`` (format ``fewshot-cam-gpu-check/1``) and ``report.md``,
both rewritten atomically after every stage, so a stage that dies loses nothing of the others.

A stage entry: ``{"status": "ok" | "failed" | "timeout" | "skipped", "seconds": wall time,
"limit_s": its time box, "result": {figure: value, ...}, "error": one paragraph (failed / timeout)}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fewshot_cam.io import atomic_write, write_json  # stdlib-only helper: the orchestrator stays light

FORMAT = "fewshot-cam-gpu-check/1"

TARGETS = {
    "throughput": "ResNet-12 at 84 px >= 10,000 images/s (CE and CAM-loss, batch gather + augmentation counted)",
    "throughput.cam_over_ce": "CAM-loss step <= 1.05x a CE step",
    "eval": "10,000 ProtoNet episodes, features included, < 10 s",
}


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts -> (dotted key, leaf) pairs, in order."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in flatten(v, f"{prefix}{k}." if prefix or k else "")]
    return [(prefix.rstrip("."), value)]


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "<br>".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "..."


def headline(stages: dict[str, Any]) -> list[str]:
    """One line per target-bearing figure of the stages that ran (for BENCHMARKS.md)."""
    lines = []
    for stage in ("throughput", "throughput-compiled"):
        for key, r in stages.get(stage, {}).get("result", {}).items():
            if isinstance(r, dict) and "cam_over_ce" in r:
                lines.append(
                    f"- {key}: CE {r['ce_images_per_s']:,.0f} images/s, CAM-loss {r['camloss_images_per_s']:,.0f} "
                    f"images/s, CAM / CE {r['cam_over_ce']:.3f}x, "
                    f"CE at {100 * r['ce_share_of_peak']:.1f}% of the bf16 peak"
                )
    proto = stages.get("eval", {}).get("result", {}).get("protonet")
    if proto:
        lines.append(f"- {proto['episodes']:,} ProtoNet episodes with features: {proto['total_s']:.2f} s "
                     f"({proto['features_s']:.2f} s features + {proto['episodes_s']:.2f} s episodes)")
    precision = stages.get("precision", {}).get("result", {})
    if "episodes_differ" in precision:
        lines.append(
            f"- bf16 vs fp32 features: {precision['episodes_differ']} of {precision['episodes']} episodes differ, "
            f"mean moves {precision['mean_shift_points']:+.3f} points"
        )
    full = stages.get("rehearsal", {}).get("result", {}).get("extrapolated")
    if full:
        lines.append(f"- RFS recipe, {full['recipe_epochs']} epochs + eval: about {full['hours']:.2f} h")
    return lines


class Report:
    """The report of one check run in ``out``; :meth:`record` adds a stage and rewrites both files."""

    def __init__(self, out: str | Path, header: dict[str, Any]) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = {**header, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                     "targets": TARGETS, "stages": {}}
        self.write()

    def record(self, name: str, entry: dict[str, Any]) -> None:
        self.data["stages"][name] = entry
        self.write()

    def write(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        write_json(self.out / "report.json", self.data, FORMAT)
        atomic_write(self.out / "report.md", self.markdown())

    def markdown(self) -> str:
        d = self.data
        lines = [f"# GPU check ({'dry run, CPU' if d.get('dry_run') else 'device run'})", "",
                 f"started {d['started']}, updated {d['updated']}; command `{d.get('command', '')}`", ""]
        lines += [f"- {k}: {_cell(v)}" for k, v in flatten(d.get("environment", {}))]
        lines += ["", "| stage | status | seconds | time box |", "|---|---|---|---|"]
        for name, entry in d["stages"].items():
            lines.append(
                f"| {name} | {entry['status']} | {entry.get('seconds', 0):.1f} | {entry.get('limit_s', 0):.0f} |"
            )
        lines += ["", "## headline", ""] + (headline(d["stages"]) or ["- (no stage with a target has run)"])
        for name, entry in d["stages"].items():
            lines += ["", f"## {name}: {entry['status']}", ""]
            if entry.get("error"):
                lines += ["```", entry["error"].strip(), "```", ""]
            pairs = flatten(entry.get("result", {}))
            if pairs:
                lines += ["| figure | value |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in pairs]
        lines += ["", "## targets", ""] + [f"- {k}: {v}" for k, v in TARGETS.items()]
        return "\n".join(lines) + "\n"
