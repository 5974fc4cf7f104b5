"""``fewshot-cam episodes {make,info}``: write a frozen evaluation-episode file, or print a file's header."""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_cam.cli import common
from fewshot_cam.cli.common import add_alias, add_data_arguments, add_settings_arguments, data_option_values
from fewshot_cam.data.episodes import (
    check_episode_count,
    check_seed,
    make_episodes,
    read_episode_header,
    save_episode_file,
)
from fewshot_cam.errors import UserError
from fewshot_cam.io import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="episodes_command", metavar="SUBCOMMAND", required=True)

    make = sub.add_parser("make", help="sample N-way K-shot episodes of a split and save them (.json or .json.gz)")
    add_data_arguments(make)
    add_settings_arguments(make, "episodes=600")
    make.add_argument(
        "--split", default="test", help="train, val, test (default), or several joined by + (train+val+test)"
    )
    make.add_argument("--ways", type=int, default=5)
    make.add_argument("--shots", type=int, default=1)
    make.add_argument("--queries", type=int, default=15)
    make.add_argument("--episodes", type=int, default=2000, help="number of episodes")
    add_alias(make, "--n", "--episodes", int)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--image-size", type=int, default=None,
                      help="size to load images at (episodes do not depend on it; default: the loader's)")
    make.add_argument("--out", default=None, type=Path, help="file to write (.json, or .json.gz to compress)")
    make.set_defaults(_episodes_run=run_make)

    info = sub.add_parser("info", help="print the header of an episode file")
    info.add_argument("file", type=Path)
    info.set_defaults(_episodes_run=run_info)


def run(args: argparse.Namespace) -> int:
    return args._episodes_run(args)


def run_make(args: argparse.Namespace) -> int:
    from fewshot_cam.data.datasets import load_split

    if args.dataset is None or args.out is None:
        raise UserError("episodes make needs --dataset and --out (flags or --config)")
    check_seed(args.seed)  # before any image is decoded
    common.check_flags(args, {"ways": (2, None), "shots": common.AT_LEAST_ONE, "queries": common.AT_LEAST_ONE,
                              "image_size": common.IMAGE_SIZE})
    check_writable(args.out)
    check_episode_count(args.episodes, f"{args.dataset}/{args.split}", args.ways, args.shots, args.queries)
    size = {} if args.image_size is None else {"image_size": args.image_size}
    split = load_split(args.dataset, args.root, args.split, options=data_option_values(args), **size)
    episodes = make_episodes(split, args.ways, args.shots, args.queries, args.episodes, args.seed)
    path = save_episode_file(episodes, split, args.out)
    print(f"wrote {episodes.n} {args.ways}-way {args.shots}-shot {args.queries}-query episodes of "
          f"{split.name} (fingerprint {episodes.fingerprint}) to {path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    for key, value in read_episode_header(args.file).items():
        print(f"{key}: {value}")
    return 0
