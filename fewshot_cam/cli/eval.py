"""``fewshot-cam eval``: few-shot accuracy (mean +- 95% CI) of a checkpoint's frozen backbone."""

from __future__ import annotations

import argparse
import sys

from fewshot_cam.cli.common import add_data_arguments, add_device_argument, pick_device
from fewshot_cam.evaluation.episodic import DEFAULT_METHODS, METHODS, check_methods
from fewshot_cam.evaluation.results import format_result, write_result
from fewshot_cam.evaluation.run import DEFAULT_EPISODES, EvalRequest, run_evaluation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (.pt) written by pretrain/metatrain")
    add_episode_arguments(parser)


def add_episode_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``eval`` flag but ``--checkpoint``: setting, episodes, methods, data, device, --json."""
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
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    parser.add_argument("--split", default="test", help="train, val or test (default test)")
    add_data_arguments(parser)
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=500, help="episodes evaluated at once")
    add_device_argument(parser)
    parser.add_argument("--json", default=None, help="write the results (with per-episode accuracies) here")


def run(args: argparse.Namespace) -> int:
    request = EvalRequest(
        checkpoint=args.checkpoint, ways=args.ways, shots=args.shots, queries=args.queries,
        episodes=args.episodes, seed=args.seed, episode_file=args.episode_file,
        methods=tuple(check_methods(args.methods)), split=args.split, dataset=args.dataset, root=args.root,
        image_size=args.image_size, backbone=args.backbone, batch_size=args.batch_size,
    )
    result = run_evaluation(request, pick_device(args.device), progress=sys.stderr.isatty())
    print(format_result(result))
    if args.json:
        print(f"wrote {write_result(args.json, result)}")
    return 0
