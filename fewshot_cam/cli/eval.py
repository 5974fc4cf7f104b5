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
from fewshot_cam.evaluation.protocols import PROTOCOLS
from fewshot_cam.evaluation.results import format_result, write_result
from fewshot_cam.evaluation.run import DEFAULT_EPISODES, EvalRequest, run_evaluation
from fewshot_cam.fewshot.episodic import METHODS, check_methods
from fewshot_cam.fewshot.normalize import NORMALIZATIONS
from fewshot_cam.io import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file (.pt) or run folder written by pretrain/metatrain (default: the final "
                             "checkpoint of the latest finished run under runs/)")
    add_shared_arguments(parser)
    add_protocol_arguments(parser)


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """eval's own: the protocol preset and the settings it implies (each flag overrides the preset)."""
    parser.add_argument("--protocol", default="fewshot-cam", choices=PROTOCOLS.names(),
                        help=f"preset of episodes, queries, normalisation, support augmentation and methods; "
                             f"{PROTOCOLS.describe()}")
    parser.add_argument("--normalize", default=None, choices=NORMALIZATIONS.names(),
                        help=f"feature normalisation before every method (default: the protocol's); "
                             f"{NORMALIZATIONS.describe()}")
    parser.add_argument("--support-augment", type=int, default=None, metavar="A",
                        help="replace each support image by A copies under the checkpoint's training augmentation "
                             "(RFS: 5; default: the protocol's, 0 = none)")


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag but ``--checkpoint`` that ablate shares: setting, episodes, methods, data, device, --json."""
    parser.add_argument("--backbone", default=None, help="fail unless the checkpoint holds this backbone")
    parser.add_argument("--ways", type=int, default=None, help="classes per episode (N)")
    parser.add_argument("--shots", type=int, default=None, help="support images per class (K)")
    parser.add_argument("--queries", type=int, default=None,
                        help="query images per class (default: the protocol's, 15)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--episodes", type=int, default=None,
                        help=f"sample this many episodes with --seed (default: the protocol's; fewshot-cam: the "
                             f"shipped frozen file for the split and setting, else {DEFAULT_EPISODES} seeded ones)")
    source.add_argument("--episode-file", default=None, help="frozen episode file (fewshot-cam episodes)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode sampler and the fitted methods")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated (default: the protocol's); {METHODS.describe()}")
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
        methods=None if args.methods is None else tuple(check_methods(args.methods)),
        split=args.split, dataset=args.dataset, root=args.root,
        image_size=args.image_size, backbone=args.backbone, batch_size=args.episode_batch,
        feature_batch_size=args.image_batch, data_options=data_option_values(args),
        protocol=args.protocol, normalize=args.normalize, support_augment=args.support_augment,
    )


def run(args: argparse.Namespace) -> int:
    args.checkpoint = latest_checkpoint(args)
    request = request_from_args(args)
    if args.json:
        check_writable(args.json)  # before the features are extracted
    result = run_evaluation(request, pick_device(args.device), progress=True)
    print(format_result(result))
    if args.json:
        print(f"wrote {write_result(args.json, result, resolved_settings(args))}")
    return 0
