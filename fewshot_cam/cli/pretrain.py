"""``fewshot-cam pretrain``: supervised pretraining on the base classes with CE or CE + CAM-loss,
optionally distilled from a teacher checkpoint (``--teacher --distill``) or with a SAOL head (``--head saol``).

Configuration layers, later wins: built-in defaults < ``--config FILE`` < explicit flags
(``--dataset``, ``--epochs``, ...) < ``--set key=value``. Under ``torchrun`` every process runs this
command; rank 0 writes the run folder.
"""

from __future__ import annotations

import argparse

from fewshot_cam.cli import common
from fewshot_cam.config import from_dict
from fewshot_cam.models.backbones import BACKBONES
from fewshot_cam.models.factory import HEADS
from fewshot_cam.training.config import PretrainConfig
from fewshot_cam.training.pretrain import fit

# flag dest -> dotted config key
FLAG_KEYS: dict[str, str] = common.RUN_FLAG_KEYS | {
    "backbone": "model.backbone",
    "head": "model.head",
    "loss": "loss.loss",
    "teacher": "distill.teacher",
    "distill": "distill.mode",
    "batch_size": "optim.batch_size",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_config_arguments(parser, "YAML file (see configs/); flags and --set override it", "optim.lr=0.1")
    common.add_data_arguments(parser)
    parser.add_argument("--image-size", type=int, default=None, help="image side in pixels (default 84)")
    parser.add_argument("--backbone", default=None, choices=BACKBONES.names(),
                        help=f"default conv4; {BACKBONES.describe()}")
    parser.add_argument("--head", default=None, choices=HEADS.names(), help=f"default linear; {HEADS.describe()}")
    parser.add_argument("--loss", default=None, choices=("ce", "camloss"), help="default ce")
    parser.add_argument("--teacher", default=None, metavar="CHECKPOINT",
                        help="frozen teacher checkpoint for --distill (same base classes, any backbone)")
    parser.add_argument("--distill", default=None, choices=("none", "kd", "at", "ccm"),
                        help="distillation from --teacher: kd, at (attention transfer), ccm (CAAM-CAM matching); "
                             "default none")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size (default 64)")
    common.add_run_arguments(parser, "default 100", "base learning rate (default 0.05)",
                             "run folder (default runs/pretrain)")


def resolve_config(args: argparse.Namespace) -> PretrainConfig:
    """defaults < --config file < explicit flags < --set; unknown keys and bad types name the key."""
    return from_dict(PretrainConfig, common.layered_settings(args, FLAG_KEYS), path=args.config)


def describe(cfg: PretrainConfig) -> str:
    """e.g. "conv4 (ce, saol head, ccm from runs/x/best.pt)"."""
    parts = [cfg.loss.loss]
    if cfg.model.head != "linear":
        parts.append(f"{cfg.model.head} head")
    if cfg.distill.mode != "none":
        parts.append(f"{cfg.distill.mode} from {cfg.distill.teacher}")
    return f"{cfg.model.backbone} ({', '.join(parts)})"


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    state, info = common.run_distributed(cfg.run.device, lambda device, info: fit(cfg, device, info, args.resume))
    if info.is_main:
        best = common.best_val_summary(state.best, state.last_val, cfg.val.every)
        print(f"pretrained {describe(cfg)} for {state.epoch} epochs on {cfg.data.dataset}: "
              f"best val {cfg.val.ways}-way {cfg.val.shots}-shot accuracy {best}; run folder {cfg.run.out}")
    return 0
