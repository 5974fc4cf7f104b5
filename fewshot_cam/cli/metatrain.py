"""``fewshot-cam metatrain``: episodic ProtoNet fine-tuning of a pretrained checkpoint.

Configuration layers, later wins: built-in defaults < the pretrained checkpoint's model and data
settings < ``--config FILE`` < explicit flags (``--ways``, ``--epochs``, ...) < ``--set key=value``.
The run folder has the layout of ``pretrain``'s; ``fewshot-cam eval --checkpoint RUN/best.pt`` reads it.
"""

from __future__ import annotations

import argparse

from fewshot_cam.cli.common import add_data_arguments, add_device_argument, pick_device
from fewshot_cam.cli.pretrain import layered_settings
from fewshot_cam.training import distributed
from fewshot_cam.training.metatrain import class_names_of, fit, resolve_config

# flag dest -> dotted config key
FLAG_KEYS: dict[str, str] = {
    "checkpoint": "checkpoint",
    "dataset": "data.dataset",
    "root": "data.root",
    "image_size": "data.image_size",
    "ways": "ways",
    "shots": "shots",
    "queries": "queries",
    "sampler": "sampler",
    "epochs": "optim.epochs",
    "lr": "optim.lr",
    "out": "run.out",
    "device": "run.device",
    "seed": "run.seed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="pretrained checkpoint (pretrain's best.pt) to start from")
    parser.add_argument("--config", default=None,
                        help="YAML file (see configs/*-metatrain.yaml); flags and --set override it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set tasks_per_step=8 (repeatable; applied last)")
    add_data_arguments(parser)
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: the checkpoint's)")
    parser.add_argument("--ways", type=int, default=None, help="classes per training episode (default 5)")
    parser.add_argument("--shots", type=int, default=None, help="support images per class (default 1)")
    parser.add_argument("--queries", type=int, default=None, help="query images per class (default 15)")
    parser.add_argument("--sampler", default=None, choices=("native", "learn2learn"),
                        help="episode source (default native)")
    parser.add_argument("--epochs", type=int, default=None, help="default 20")
    parser.add_argument("--lr", type=float, default=None, help="SGD learning rate (default 0.001)")
    parser.add_argument("--out", default=None, help="run folder (default runs/metatrain)")
    parser.add_argument("--seed", type=int, default=None)
    add_device_argument(parser)
    parser.set_defaults(device=None)  # unset unless given, so it does not override the file
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")


def run(args: argparse.Namespace) -> int:
    cfg, model, ckpt = resolve_config(layered_settings(args, FLAG_KEYS), args.config)
    info = distributed.from_env()
    device = distributed.local_device(pick_device(cfg.run.device), info)
    with distributed.process_group(info, device):
        state = fit(cfg, model, class_names_of(ckpt), device, info, resume_run=args.resume)
    if info.is_main:
        best = "n/a (validation off)" if state.last_val is None else f"{state.best:.2f}%"
        last = "" if state.last_val is None else f", last {state.last_val} %"
        print(f"meta-trained {cfg.model.backbone} ({cfg.ways}-way {cfg.shots}-shot, {cfg.metric}) for {state.epoch} "
              f"epochs on {cfg.data.dataset}: best val {cfg.val.ways}-way {cfg.val.shots}-shot accuracy {best}{last}; "
              f"run folder {cfg.run.out}")
    return 0
