"""``fewshot-cam pretrain``: supervised pretraining on the base classes with CE or CE + CAM-loss,
optionally distilled from a teacher checkpoint (``--teacher --distill``) or with a SAOL head (``--head saol``).

Configuration layers, later wins: built-in defaults < ``--config FILE`` < explicit flags
(``--dataset``, ``--epochs``, ...) < ``--set key=value``. Without ``--config`` on the built-in
benchmark (no ``--dataset``, or ``--dataset synthetic``) the built-in layer is the quick-start
CAM-loss recipe (``training.config.QUICKSTART``: Conv-4-2pool, 32 px, 4 epochs), so bare
``fewshot-cam pretrain`` trains a useful model in minutes into runs/pretrain. Under ``torchrun`` every process runs this
command; rank 0 writes the run folder.

``--seeds 0,1,2`` trains one independent run per seed, one after the other, into ``OUT/seed0``,
``OUT/seed1``, ... (``run.seed`` and ``run.out`` set per run, every other setting shared); evaluate
each and combine them with ``fewshot-cam report --group``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from fewshot_cam.cli import common
from fewshot_cam.config import from_dict, merge
from fewshot_cam.errors import UserError, check_range
from fewshot_cam.losses.distill import DISTILL_MODES
from fewshot_cam.models.backbones import BACKBONE_METAVAR, BACKBONES, backbone_choices
from fewshot_cam.models.checkpoint import SELECTIONS
from fewshot_cam.models.factory import HEADS
from fewshot_cam.models.runs import completed_epochs, is_finished, planned_epochs
from fewshot_cam.training.config import QUICKSTART, PretrainConfig
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
    parser.add_argument("--backbone", default=None, choices=backbone_choices(), metavar=BACKBONE_METAVAR,
                        help=f"default conv4; {BACKBONES.describe()}; timm:NAME: any timm model (extra 'timm'; "
                             "weights only from a file: --set model.weights=PATH)")
    parser.add_argument("--head", default=None, choices=HEADS.names(), help=f"default linear; {HEADS.describe()}")
    parser.add_argument("--loss", default=None, choices=("ce", "camloss"), help="default ce")
    parser.add_argument("--teacher", default=None, metavar="CHECKPOINT",
                        help="frozen teacher checkpoint for --distill (same base classes, any backbone)")
    parser.add_argument("--distill", default=None, choices=tuple(DISTILL_MODES),
                        help="distillation from --teacher (default none): "
                             + "; ".join(f"{k}: {v}" for k, v in DISTILL_MODES.items() if k != "none"))
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size (default 64)")
    common.add_run_arguments(parser, "default 100", "base learning rate (default 0.05)",
                             "run folder (default runs/pretrain)")
    parser.add_argument("--seeds", default=None, metavar="S,S,...",
                        help="train one run per seed into OUT/seed<S> (instead of --seed; e.g. --seeds 0,1,2)")


def resolve_config(args: argparse.Namespace) -> PretrainConfig:
    """defaults < --config file < explicit flags < --set; unknown keys and bad types name the key.
    Without --config on the built-in benchmark the defaults are :data:`QUICKSTART`."""
    settings = common.layered_settings(args, FLAG_KEYS)
    if args.config is None and (settings.get("data") or {}).get("dataset", "synthetic") == "synthetic":
        settings = merge(QUICKSTART, settings)
    return from_dict(PretrainConfig, settings, path=args.config)


def describe(cfg: PretrainConfig) -> str:
    """e.g. "conv4 (ce, saol head, ccm from runs/x/best.pt)"."""
    parts = [cfg.loss.loss]
    if cfg.model.head != "linear":
        parts.append(f"{cfg.model.head} head")
    if cfg.distill.mode != "none":
        parts.append(f"{cfg.distill.mode} from {cfg.distill.teacher}")
    return f"{cfg.model.backbone} ({', '.join(parts)})"


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]; UserError for a non-integer, a repeat or an empty list."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds needs distinct integers, got '{text}'")
    for seed in seeds:
        check_range("--seeds", seed, *common.SEED)
    return seeds


def seed_configs(cfg: PretrainConfig, seeds: list[int]) -> list[PretrainConfig]:
    """One config per seed: ``run.seed`` = s, ``run.out`` = <run.out>/seed<s>."""
    return [dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=s, out=str(Path(cfg.run.out) / f"seed{s}")))
            for s in seeds]


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.seeds is None:
        return train_one(cfg, args.resume)
    if args.seed is not None:
        raise UserError("give --seed or --seeds, not both")
    for seed_cfg in seed_configs(cfg, parse_seeds(args.seeds)):
        train_one(seed_cfg, args.resume)
    return 0


def check_fresh(out: str | Path, resume: bool) -> None:
    """A fresh run refuses a folder that already holds one, saying whether it finished."""
    if resume or not (Path(out) / "last.pt").exists():
        return
    done, planned = completed_epochs(out), planned_epochs(out)
    state = "a finished run" if is_finished(out) else f"an interrupted run ({done}/{planned} epochs)"
    more = "--resume --epochs N to train it further" if is_finished(out) else "--resume to continue it"
    raise UserError(f"the run folder already holds {state}: pick another --out for a new run, or {more}", out)


def train_one(cfg: PretrainConfig, resume: bool) -> int:
    check_fresh(cfg.run.out, resume)
    state, info = common.run_distributed(cfg.run.device, lambda device, info: fit(cfg, device, info, resume))
    if info.is_main:
        best = common.best_val_summary(state.best, state.last_val, cfg.val.every)
        print(
            f"pretrained {describe(cfg)} for {state.epoch} epochs on {cfg.data.dataset}: "
            f"best val {cfg.val.ways}-way {cfg.val.shots}-shot accuracy {best}; seed {cfg.run.seed}; "
            f"run folder {cfg.run.out} "
            f"(final model {SELECTIONS[cfg.train.select]}, train.select {cfg.train.select})"
        )
        print(f"wrote {Path(cfg.run.out) / SELECTIONS[cfg.train.select]} (log: {Path(cfg.run.out) / 'train.log'})")
    return 0
