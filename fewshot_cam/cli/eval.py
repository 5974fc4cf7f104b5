"""``fewshot-cam eval``: few-shot accuracy (mean +- 95% CI) of a checkpoint's frozen backbone."""

from __future__ import annotations

import argparse

from fewshot_cam.cli.common import (
    add_alias,
    add_data_arguments,
    add_device_argument,
    add_settings_arguments,
    data_option_values,
    pick_device,
    resolved_settings,
)
from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.results import format_result, write_result
from fewshot_cam.evaluation.run import DEFAULT_EPISODES, EvalRequest, run_evaluation
from fewshot_cam.fewshot.episodic import DEFAULT_METHODS, METHODS, check_methods


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file (.pt) or run folder written by pretrain/metatrain (default: the final "
                             "checkpoint of the latest finished run under runs/)")
    parser.add_argument("--backbone", default=None, help="fail unless the checkpoint holds this backbone")
    parser.add_argument("--ways", type=int, default=None, help="classes per episode (N)")
    parser.add_argument("--shots", type=int, default=None, help="support images per class (K)")
    parser.add_argument("--queries", type=int, default=None, help="query images per class (default 15)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--episodes", type=int, default=None,
                        help=f"sample this many episodes with --seed (default: the shipped frozen file for this "
                             f"split and setting, else {DEFAULT_EPISODES} seeded episodes)")
    source.add_argument("--episode-file", default=None, help="frozen episode file (fewshot-cam episodes)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode sampler and the fitted methods")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated; {METHODS.describe()}")
    parser.add_argument("--split", default="test", help="train, val or test (default test)")
    add_data_arguments(parser)
    add_settings_arguments(parser)
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: the checkpoint's)")
    parser.add_argument("--episode-batch", type=int, default=500, help="episodes evaluated at once")
    add_alias(parser, "--batch-size", "--episode-batch", int)
    parser.add_argument("--image-batch", type=int, default=256, help="images per forward pass (feature extraction)")
    add_device_argument(parser)
    parser.add_argument("--json", default=None, help="write the results (with per-episode accuracies) here")


def latest_checkpoint(args: argparse.Namespace) -> str:
    """--checkpoint, else the final checkpoint of the latest finished run under runs/ (said on stdout)."""
    if args.checkpoint is not None:
        return args.checkpoint
    from fewshot_cam.models.runs import latest_finished_run

    found = latest_finished_run("runs")
    if found is None:
        raise UserError("no --checkpoint given and no finished run under runs/ (runs/*/ or runs/*/*/); "
                        "train one with 'fewshot-cam pretrain' or pass --checkpoint", "runs")
    print(f"evaluating {found} (the latest finished run under runs/; pass --checkpoint to choose)")
    return str(found)


def request_from_args(args: argparse.Namespace) -> EvalRequest:
    """The parsed flags as an :class:`EvalRequest`."""
    return EvalRequest(
        checkpoint=args.checkpoint, ways=args.ways, shots=args.shots, queries=args.queries,
        episodes=args.episodes, seed=args.seed, episode_file=args.episode_file,
        methods=tuple(check_methods(args.methods)), split=args.split, dataset=args.dataset, root=args.root,
        image_size=args.image_size, backbone=args.backbone, batch_size=args.episode_batch,
        feature_batch_size=args.image_batch, data_options=data_option_values(args),
    )


def run(args: argparse.Namespace) -> int:
    args.checkpoint = latest_checkpoint(args)
    request = request_from_args(args)
    result = run_evaluation(request, pick_device(args.device), progress=True)
    print(format_result(result))
    if args.json:
        print(f"wrote {write_result(args.json, result, resolved_settings(args))}")
    return 0
