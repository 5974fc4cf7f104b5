"""``fewshot-cam pretrain``: supervised pretraining on the base classes with CE or CE + CAM-loss,
optionally distilled from a teacher checkpoint (``--teacher --distill``) or with a SAOL head (``--head saol``).

Configuration layers, later wins: built-in defaults < ``--config FILE`` < explicit flags
(``--dataset``, ``--epochs``, ...) < ``--set key=value``. Under ``torchrun`` every process runs this
command; rank 0 writes the run folder.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from fewshot_cam.cli.common import add_data_arguments, add_device_argument, pick_device
from fewshot_cam.config import from_dict, merge, parse_overrides, read_yaml
from fewshot_cam.training import distributed
from fewshot_cam.training.config import PretrainConfig
from fewshot_cam.training.pretrain import fit

# flag dest -> dotted config key
FLAG_KEYS: dict[str, str] = {
    "dataset": "data.dataset",
    "root": "data.root",
    "image_size": "data.image_size",
    "backbone": "model.backbone",
    "head": "model.head",
    "loss": "loss.loss",
    "teacher": "distill.teacher",
    "distill": "distill.mode",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "out": "run.out",
    "device": "run.device",
    "seed": "run.seed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML file (see configs/); flags and --set override it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set optim.lr=0.1 (repeatable; applied last)")
    add_data_arguments(parser)
    parser.add_argument("--image-size", type=int, default=None, help="image side in pixels (default 84)")
    parser.add_argument("--backbone", default=None, help="conv4, resnet12, resnet18, tiny, ... (default conv4)")
    parser.add_argument("--head", default=None, choices=("linear", "saol"),
                        help="classification head: linear (GAP + FC, default) or saol (spatially attentive output layer)")
    parser.add_argument("--loss", default=None, choices=("ce", "camloss"), help="default ce")
    parser.add_argument("--teacher", default=None, metavar="CHECKPOINT",
                        help="frozen teacher checkpoint for --distill (same base classes, any backbone)")
    parser.add_argument("--distill", default=None, choices=("none", "kd", "at", "ccm"),
                        help="distillation from --teacher: kd, at (attention transfer), ccm (CAAM-CAM matching); default none")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size (default 64)")
    parser.add_argument("--lr", type=float, default=None, help="base learning rate (default 0.05)")
    parser.add_argument("--out", default=None, help="run folder (default runs/pretrain)")
    parser.add_argument("--seed", type=int, default=None)
    add_device_argument(parser)
    parser.set_defaults(device=None)  # unset unless given, so it does not override the file
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")


def flag_values(args: argparse.Namespace, keys: dict[str, str] = FLAG_KEYS) -> dict[str, Any]:
    """The explicitly given flags (not None) as a nested mapping; ``keys``: flag dest -> dotted key."""
    nested: dict[str, Any] = {}
    for dest, key in keys.items():
        if getattr(args, dest) is not None:
            *sections, name = key.split(".")
            node = nested
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = getattr(args, dest)
    return nested


def layered_settings(args: argparse.Namespace, keys: dict[str, str] = FLAG_KEYS) -> dict[str, Any]:
    """--config file < explicit flags < --set, as one nested mapping (defaults come from the dataclass)."""
    data = read_yaml(args.config) if args.config else {}
    return merge(merge(data, flag_values(args, keys)), parse_overrides(args.overrides))


def resolve_config(args: argparse.Namespace) -> PretrainConfig:
    """defaults < --config file < explicit flags < --set; unknown keys and bad types name the key."""
    return from_dict(PretrainConfig, layered_settings(args), path=args.config)


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
    info = distributed.from_env()
    device = distributed.local_device(pick_device(cfg.run.device), info)
    with distributed.process_group(info, device):
        state = fit(cfg, device, info, resume_run=args.resume)
    if info.is_main:
        if not math.isinf(state.best):
            best = f"{state.best:.2f}%"
        else:
            best = "n/a (validation off)" if cfg.val.every <= 0 else "n/a (no validation yet)"
        last = "" if state.last_val is None else f", last {state.last_val} %"
        print(f"pretrained {describe(cfg)} for {state.epoch} epochs on {cfg.data.dataset}: "
              f"best val {cfg.val.ways}-way {cfg.val.shots}-shot accuracy {best}{last}; run folder {cfg.run.out}")
    return 0
