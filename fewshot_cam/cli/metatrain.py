"""``fewshot-cam metatrain``: episodic ProtoNet fine-tuning of a pretrained checkpoint.

Configuration layers, later wins: built-in defaults < the pretrained checkpoint's model and data
settings < ``--config FILE`` < explicit flags (``--ways``, ``--epochs``, ...) < ``--set key=value``.
The run folder has the layout of ``pretrain``'s; ``fewshot-cam eval --checkpoint RUN/best.pt`` reads it.
"""

from __future__ import annotations

import argparse

from fewshot_cam.cli import common
from fewshot_cam.training.metatrain import SAMPLERS, class_names_of, fit, resolve_config

# flag dest -> dotted config key
FLAG_KEYS: dict[str, str] = common.RUN_FLAG_KEYS | {
    "checkpoint": "checkpoint",
    "ways": "ways",
    "shots": "shots",
    "queries": "queries",
    "sampler": "sampler",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="pretrained checkpoint (pretrain's best.pt) to start from")
    common.add_config_arguments(parser, "YAML file (see configs/*-metatrain.yaml); flags and --set override it",
                         "tasks_per_step=8")
    common.add_data_arguments(parser)
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: the checkpoint's)")
    parser.add_argument("--ways", type=int, default=None, help="classes per training episode (default 5)")
    parser.add_argument("--shots", type=int, default=None, help="support images per class (default 1)")
    parser.add_argument("--queries", type=int, default=None, help="query images per class (default 15)")
    parser.add_argument("--sampler", default=None, choices=SAMPLERS.names(),
                        help=f"episode source (default native); {SAMPLERS.describe()}")
    common.add_run_arguments(parser, "default 20", "SGD learning rate (default 0.001)",
                             "run folder (default runs/metatrain)")


def run(args: argparse.Namespace) -> int:
    cfg, model, ckpt = resolve_config(common.layered_settings(args, FLAG_KEYS), args.config)
    names = class_names_of(ckpt)
    state, info = common.run_distributed(
        cfg.run.device, lambda device, info: fit(cfg, model, names, device, info, resume_run=args.resume)
    )
    if info.is_main:
        best = common.best_val_summary(state.best, state.last_val, cfg.val.every)
        print(f"meta-trained {cfg.model.backbone} ({cfg.ways}-way {cfg.shots}-shot, {cfg.metric}) for {state.epoch} "
              f"epochs on {cfg.data.dataset}: best val {cfg.val.ways}-way {cfg.val.shots}-shot accuracy {best}; "
              f"run folder {cfg.run.out}")
    return 0
