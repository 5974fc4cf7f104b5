"""The GPU check's stages, in the order they run (issue 20's a-f), as a registry.

Each stage is a module exposing ``run(ctx: Context) -> None`` (the CLI's pattern: imported only in
the stage's own subprocess, so the orchestrator stays light and a broken stage breaks only itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from fewshot_cam.errors import UserError
from fewshot_cam.registry import Registry


@dataclass(frozen=True)
class Stage:
    letter: str
    """The issue's letter for it (``--stages b`` selects both throughput stages)."""
    module: str
    """Module with ``run(ctx)``."""


STAGES: Registry[Stage] = Registry("GPU-check stage")
STAGES.register(
    "tests",
    Stage("a", "fewshot_cam.bench.stage_tests"),
    help="the gpu-marked tests: bf16 + channels-last pretraining (CE, CAM-loss), resume, eval, cam, ablate, torchrun",
)
STAGES.register("throughput", Stage("b", "fewshot_cam.bench.throughput"),
                help="pretraining images/s, CAM-loss / CE step ratio, share of the measured bf16 matmul peak (eager)")
STAGES.register("throughput-compiled", Stage("b", "fewshot_cam.bench.throughput_compiled"),
                help="the same with torch.compile, when compiling takes under the limit")
STAGES.register("eval", Stage("c", "fewshot_cam.bench.evaluation"),
                help="10,000 ProtoNet episodes with features; logreg, Baseline, Baseline++ on 2,000")
STAGES.register("ablation", Stage("d", "fewshot_cam.bench.ablation"),
                help="background ablation (every fill and condition), CAM family on 1,000 images: time, memory")
STAGES.register("precision", Stage("e", "fewshot_cam.bench.precision"),
                help="bf16 vs fp32 features: per-episode accuracies that differ")
STAGES.register("rehearsal", Stage("f", "fewshot_cam.bench.rehearsal"),
                help="miniImageNet-shaped synthetic set, 2 timed RFS epochs, eval; the 100-epoch wall clock")


def select(spec: str | None) -> list[str]:
    """``"a,c"`` / ``"throughput,eval"`` / None (all) -> stage names in run order."""
    if not spec:
        return STAGES.names()
    wanted = {w.strip() for w in spec.split(",") if w.strip()}
    letters = {stage.letter for _, stage in STAGES.items()}
    unknown = sorted(w for w in wanted if w not in STAGES and w not in letters)
    if unknown:
        raise UserError(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES.names())} "
                        f"or the letters {', '.join(sorted(letters))}")
    return [name for name, stage in STAGES.items() if name in wanted or stage.letter in wanted]
