"""How big each stage of the GPU check is: the real sizes (one H100/H200) and the CPU dry run's.

Estimates for one H100/H200 (reasoned, not yet measured; ResNet-12 at 84 px is about 3.5 GFLOP
forward per image, about 10.5 GFLOP per trained image; the bf16 matrix peak is about 790 TFLOP/s):

=========================  ==========  ========  ======================================================
stage                      estimate    time box  why
=========================  ==========  ========  ======================================================
tests                      ~60 s       120 s     ~12 tiny CLI runs + two torchrun launches (~10 s each)
throughput (eager)         ~25 s       75 s      CUDA start, peak matmul, 2 batch sizes x 2 losses x 120 steps
throughput-compiled        ~70 s       120 s     torch.compile of the backbone (< 90 s or skipped) + 120 steps
eval                       ~25 s       75 s      12,000-image split drawn in parallel; 12,000 images embedded
                                                 (~0.1 s of matrix work); 10,000 ProtoNet + 3 x 2,000 fitted
ablation                   ~45 s       90 s      3 fills x 3 conditions x ~12,000 images; Score-CAM
                                                 640 masked copies x 1,000 images (~2 PFLOP: ~15-30 s)
precision                  ~15 s       45 s      the same 12,000 images in fp32 (TF32 off) and bf16
rehearsal                  ~90 s       180 s     60,000 images drawn on 16 cores (~20 s), 2 RFS epochs
                                                 (38,400 images each, val 600 episodes), eval 2,000
=========================  ==========  ========  ======================================================

About 330 s in all; ``budget_s`` (540 s) caps the sum of the time boxes actually given, so one run
fits in a 10-minute device command with room to copy the report back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Sizes:
    """Every size the stages read; :data:`FULL` on a GPU, :data:`DRY` for ``--dry-run`` on the CPU."""

    device: str = "cuda"
    """Where the stages run."""
    backbone: str = "resnet12"
    """Backbone of every stage (random weights, except the rehearsal's trained one)."""
    image_size: int = 84
    """Image side in pixels."""
    batch_sizes: tuple[int, ...] = (64, 256)
    """Throughput: training batch sizes measured (64 is the RFS recipe's)."""
    compile_batch_size: int = 256
    """Throughput, compiled: the one batch size compiled (another would recompile)."""
    steps: int = 20
    """Throughput: training steps per timed block."""
    blocks: int = 5
    """Throughput: timed blocks per (batch size, loss), interleaved CE / CAM-loss."""
    compile_backend: str = "inductor"
    """torch.compile backend (the dry run uses "eager": Dynamo's tracing without code generation)."""
    compile_limit_s: float = 90.0
    """Compiled throughput is measured only when compiling took less than this."""
    peak_n: int = 8192
    """Side of the square bf16 matrices whose product measures the matrix peak."""
    classes: int = 20
    """Evaluation split: classes (20, as miniImageNet test)."""
    per_class: int = 600
    """Evaluation split: images per class (600, as miniImageNet test)."""
    draw_chunk: int = 60
    """Synthetic images are drawn in chunks of this many per class (one seed each), in parallel."""
    episodes: int = 10000
    """ProtoNet episodes of the evaluation stage (5-way 1-shot 15-query)."""
    method_episodes: int = 2000
    """Episodes of logreg / Baseline / Baseline++, the ablation and the precision comparison."""
    cam_images: int = 1000
    """Images each attribution method explains."""
    cam_batch_size: int = 64
    """Images (and Score-CAM masked copies) per forward pass."""
    rehearsal_classes: tuple[int, int, int] = (64, 16, 20)
    """Rehearsal: train, val and test classes (miniImageNet's)."""
    rehearsal_per_class: int = 600
    """Rehearsal: images per class."""
    rehearsal_epochs: int = 2
    """Rehearsal: timed epochs of the RFS recipe."""
    rehearsal_recipe_epochs: int = 100
    """Rehearsal: the full recipe's epochs, for the extrapolation."""
    rehearsal_overrides: tuple[str, ...] = ()
    """Rehearsal: extra ``--set`` overrides of the RFS config (the dry run shrinks it)."""
    test_filter: str = ""
    """Stage a: a pytest ``-k`` expression ("" runs every gpu-marked test)."""
    workers: int = 16
    """Processes drawing synthetic images (capped by the machine's cores)."""
    budget_s: float = 540.0
    """All time boxes together; a stage gets min(its box, what is left)."""
    time_boxes: dict[str, float] = field(default_factory=lambda: {
        "tests": 120, "throughput": 75, "throughput-compiled": 120, "eval": 75, "ablation": 90,
        "precision": 45, "rehearsal": 180,
    })
    """Seconds each stage may run (its subprocess is killed after)."""


FULL = Sizes()

DRY = replace(
    FULL,
    device="cpu",
    backbone="tiny",
    image_size=32,
    batch_sizes=(8,),
    compile_batch_size=8,
    compile_backend="eager",
    steps=2,
    blocks=2,
    compile_limit_s=60.0,
    peak_n=256,
    classes=5,
    per_class=20,
    draw_chunk=10,
    episodes=20,
    method_episodes=10,
    cam_images=4,
    cam_batch_size=4,
    rehearsal_classes=(8, 5, 5),
    rehearsal_per_class=20,
    rehearsal_epochs=1,
    rehearsal_overrides=(
        "model.backbone=tiny",
        "model.drop_block=false",
        "data.image_size=32",
        "optim.batch_size=16",
        "val.episodes=10",
        "data.on_device=false",
    ),
    test_filter="not resume and not gradcam",
    workers=1,
    budget_s=120.0,
    time_boxes={
        "tests": 60,
        "throughput": 30,
        "throughput-compiled": 60,
        "eval": 30,
        "ablation": 30,
        "precision": 30,
        "rehearsal": 40,
    },
)
