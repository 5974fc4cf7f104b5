"""``fewshot-cam data {info,synth,show}``: inspect a dataset, write or preview the built-in benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_cam.cli.common import add_data_arguments
from fewshot_cam.data.datasets import detect_layout, load_split, split_info
from fewshot_cam.data.split import SPLITS
from fewshot_cam.data.preview import save_grid
from fewshot_cam.data.synthetic import SynthConfig, write_synthetic

CACHE_STATE = {True: "yes", False: "no", None: "-"}  # "-": never cached (generated in memory)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    info = sub.add_parser("info", help="classes and images per split, and the detected layout")
    add_data_arguments(info, required=True)
    info.add_argument("--image-size", type=int, default=84, help="size to report the cache state for")
    info.set_defaults(_data_run=run_info)

    synth = sub.add_parser("synth", help="write the synthetic benchmark as an image folder with masks")
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    default = SynthConfig()
    synth.add_argument("--seed", type=int, default=default.seed, help="(default: %(default)s)")
    synth.add_argument("--image-size", type=int, default=default.image_size, help="(default: %(default)s)")
    synth.add_argument("--images-per-class", type=int, default=default.images_per_class, help="(default: %(default)s)")
    synth.add_argument("--shortcut-rate", type=float, default=default.shortcut_rate,
                       help="fraction of images whose background gives their class away (default: %(default)s)")
    synth.add_argument("--objects", default=default.objects, choices=("class", "random"),
                       help="random: every image's object drawn at random, so objects carry no class information "
                            "(a background learner's training data) (default: %(default)s)")
    synth.add_argument("--novel-backgrounds", default=default.novel_backgrounds, choices=("random", "class"),
                       help="val/test backgrounds: independent of the class, or each class on its own family "
                            "(backgrounds follow the class) (default: %(default)s)")
    synth.set_defaults(_data_run=run_synth)

    show = sub.add_parser("show", help="save a grid of sample images of a split as a PNG")
    add_data_arguments(show, required=True)
    show.add_argument("--split", required=True, choices=SPLITS)
    show.add_argument("--out", required=True, type=Path, help="PNG file to write")
    show.add_argument("--image-size", type=int, default=84)
    show.add_argument("--n-classes", type=int, default=8)
    show.add_argument("--per-class", type=int, default=6)
    show.add_argument("--seed", type=int, default=0, help="which classes and images are drawn")
    show.set_defaults(_data_run=run_show)


def run(args: argparse.Namespace) -> int:
    return args._data_run(args)


def run_info(args: argparse.Namespace) -> int:
    layout = detect_layout(args.dataset, args.root)
    where = "built in, generated in memory" if args.root is None else str(Path(args.root).resolve())
    print(f"{args.dataset} ({where}), layout: {layout}")
    print(f"{'split':<6} {'classes':>8} {'images':>8}  cached at {args.image_size} px")
    for split in SPLITS:
        info = split_info(args.dataset, args.root, split, args.image_size)
        print(f"{split:<6} {info['classes']:>8} {info['images']:>8}  {CACHE_STATE[info['cached']]}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    cfg = SynthConfig(seed=args.seed, image_size=args.image_size, images_per_class=args.images_per_class,
                      shortcut_rate=args.shortcut_rate, objects=args.objects,
                      novel_backgrounds=args.novel_backgrounds)
    write_synthetic(args.out, cfg)
    print(f"wrote the synthetic benchmark to {args.out} (read it with --dataset imagefolder --root {args.out})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    split = load_split(args.dataset, args.root, args.split, args.image_size)
    save_grid(split, args.out, args.n_classes, args.per_class, seed=args.seed)
    print(f"wrote {args.out}")
    return 0
