"""The pretraining configuration: one frozen dataclass per concern, nested in :class:`PretrainConfig`.

Filled by :func:`fewshot_cam.config.from_dict` (YAML, CLI flags, ``--set a.b=v``); saved as
``config.yaml`` in the run folder and inside every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fewshot_cam.config import check_device_name
from fewshot_cam.data.datasets import DATASETS
from fewshot_cam.data.options import ReadOptions
from fewshot_cam.errors import UserError, check_ranges
from fewshot_cam.losses.camloss import LossConfig
from fewshot_cam.losses.distill import DistillConfig
from fewshot_cam.losses.saol import SAOLLossConfig
from fewshot_cam.models.checkpoint import SELECTIONS
from fewshot_cam.models.factory import ModelConfig
from fewshot_cam.training.augment import AugmentConfig
from fewshot_cam.training.optim import OptimConfig
from fewshot_cam.training.validation import ValConfig


@dataclass(frozen=True)
class DataConfig(ReadOptions):
    """Where the training images come from, and the read options (``crop``, ``masks``, ... of
    :class:`~fewshot_cam.data.options.ReadOptions`) of the formats that take them."""

    dataset: str = "synthetic"
    """Dataset name: mini-imagenet, tiered-imagenet, imagefolder, cub, filelist or synthetic (built in, no files)."""
    root: str | None = None
    """Dataset root folder (not needed for synthetic)."""
    image_size: int = 84
    """Side of the (square) images, in pixels."""
    train_split: str = "train"
    """Split whose classes are the base classes; several joined by '+' (e.g. train+val+test, Chen et
    al.'s cross-domain pretraining on all 100 miniImageNet classes)."""
    on_device: bool = False
    """Keep the whole uint8 training split in device memory (fast on a GPU with room to spare);
    otherwise it stays in host memory and each batch is gathered into pinned memory."""

    def __post_init__(self) -> None:
        super().__post_init__()
        DATASETS.get(self.dataset)
        check_ranges("data", self, {"image_size": (8, 4096)})
        if not self.train_split.strip():
            raise UserError("data.train_split must name a split, got ''")


@dataclass(frozen=True)
class RunConfig:
    """Where the run goes and how it is executed."""

    out: str = "runs/pretrain"
    """Run folder: config.yaml, metrics.jsonl, train.log, last.pt, best.pt, tb/."""
    seed: int = 0
    """Seed of every random draw (shuffling, augmentation, initialisation, dropout)."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda, cuda:1, ... (under torchrun: cuda:LOCAL_RANK)."""
    amp: bool = True
    """bf16 autocast on CUDA (the CAM maths stays float32); ignored on the CPU."""
    channels_last: bool = True
    """channels-last memory format on CUDA; ignored on the CPU."""
    compile: bool = False
    """torch.compile the backbone."""
    log_every: int = 20
    """Steps between progress-bar updates and non-finite-loss checks (each one waits for the device)."""
    tensorboard: bool = True
    """Write TensorBoard event files to <out>/tb when tensorboard is installed."""
    progress: bool = True
    """Show a progress bar per epoch (only on a terminal; the per-epoch log line is printed either way)."""

    def __post_init__(self) -> None:
        check_ranges("run", self, {"seed": (0, 2**63 - 1), "log_every": (1, None)})
        check_device_name(self.device, "run.device")
        if not str(self.out).strip():
            raise UserError("run.out must name a folder, got ''")


@dataclass(frozen=True)
class TrainConfig:
    """Which checkpoint is the run's final model."""

    select: str = "best-val"
    """"best-val": best.pt, the epoch with the best few-shot validation accuracy; "last": last.pt, the
    model after the last epoch (RFS, Tian et al. 2020, evaluates its final model). ``eval``, ``cam`` and
    ``ablate`` given the run folder as --checkpoint read this choice (``models.checkpoint.final_checkpoint``)."""

    def __post_init__(self) -> None:
        if self.select not in SELECTIONS:
            raise UserError(f"unknown train.select '{self.select}' (valid: {', '.join(SELECTIONS)})")


@dataclass(frozen=True)
class PretrainConfig:
    """``fewshot-cam pretrain``: supervised pretraining on the base classes, CE or CE + alpha CAM-loss,
    optionally distilled from a teacher and/or with a SAOL head."""

    data: DataConfig = field(default_factory=DataConfig)
    """Training data."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone and head."""
    loss: LossConfig = field(default_factory=LossConfig)
    """ce, or camloss (L = L_ce + alpha L_cam after the warm-up)."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Distillation from a frozen teacher checkpoint: none, kd, at (the CAM-loss paper's L_at), ccm, or zk-at
    (Zagoruyko & Komodakis attention transfer at the backbone's stages)."""
    saol: SAOLLossConfig = field(default_factory=SAOLLossConfig)
    """Weights of the SAOL training losses (only used when model.head is saol or saol-rawlogit-psp)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Training augmentation (on the device)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and learning-rate schedule."""
    val: ValConfig = field(default_factory=ValConfig)
    """Few-shot validation that picks best.pt."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Which checkpoint is the final model (best.pt or last.pt)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Output folder, seed, device and speed options."""


QUICKSTART: dict = {
    "data": {"dataset": "synthetic", "image_size": 32},
    "model": {"backbone": "conv4-2pool"},
    "loss": {"loss": "camloss", "alpha": 1.0, "warmup_epochs": 1, "distance": "l1"},
    "augment": {"scale": [0.35, 1.0]},
    "optim": {"epochs": 4, "batch_size": 64, "lr": 0.05, "schedule": "cosine"},
    "val": {"every": 2, "ways": 5, "shots": 1, "queries": 15, "episodes": 200},
}
"""The base layer of ``fewshot-cam pretrain`` without ``--config`` on the built-in benchmark: the
CAM-loss recipe of configs/synthetic-conv4-camloss.yaml cut to 4 epochs (minutes on a laptop CPU)."""
