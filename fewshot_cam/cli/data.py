"""``fewshot-cam data {info,synth,show,boxes,boxes-from-masks}``: inspect a dataset, write or preview the
built-in benchmark, build foreground-mask files from ImageNet's boxes (or boxes from true masks)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fewshot_cam.cli import common
from fewshot_cam.cli.common import add_data_arguments, add_data_options_argument, data_option_values
from fewshot_cam.data.box_masks import BOX_SHAPES, REFINES, boxes_from_masks
from fewshot_cam.data.boxes import BoxRequest, build_box_masks, coverage_table
from fewshot_cam.data.datasets import detect_layout, load_split, split_info
from fewshot_cam.data.mask_file import with_mask_file, write_mask_file
from fewshot_cam.data.preview import save_grid
from fewshot_cam.data.split import SPLITS
from fewshot_cam.data.synthetic import SynthConfig, write_synthetic
from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.results import markdown_table
from fewshot_cam.io import check_writable

CACHE_STATE = {True: "yes", False: "no", None: "-"}  # "-": never cached (generated in memory)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    info = sub.add_parser("info", help="classes and images per split, and the detected layout")
    add_data_arguments(info, required=True)
    add_data_options_argument(info)
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
    add_data_options_argument(show)
    show.add_argument("--split", required=True, help=f"{', '.join(SPLITS)}, or several joined by +")
    show.add_argument("--out", required=True, type=Path, help="PNG file to write")
    show.add_argument("--image-size", type=int, default=84)
    show.add_argument("--n-classes", type=int, default=8)
    show.add_argument("--per-class", type=int, default=6)
    show.add_argument("--seed", type=int, default=0, help="which classes and images are drawn")
    show.add_argument("--masks", default=None, type=Path, metavar="FILE.npz",
                      help="outline the masks of a mask file (from 'data boxes'); only images with a mask are shown")
    show.set_defaults(_data_run=run_show)
    add_boxes_arguments(sub)


def add_boxes_arguments(sub) -> None:
    boxes = sub.add_parser("boxes", help="foreground masks of a split from ImageNet's box annotations")
    boxes.add_argument("--dataset", required=True, choices=("mini-imagenet", "tiered-imagenet", "imagefolder"))
    boxes.add_argument("--root", required=True, help="the few-shot dataset's root folder")
    boxes.add_argument(
        "--imagenet-train", required=True, type=Path, help="ImageNet's train folder: <wnid>/<wnid>_<n>.JPEG"
    )
    boxes.add_argument("--boxes", required=True, type=Path,
                       help="folder of VOC XML files (<wnid>/<wnid>_<n>.xml) or LOC_train_solution.csv")
    boxes.add_argument("--split", required=True, nargs="+", choices=SPLITS, help="one or more splits")
    boxes.add_argument("--out", required=True, help="mask file to write, FILE.npz; with several splits a name "
                                                    "holding {split}, e.g. masks/mini-{split}.npz")
    boxes.add_argument("--synsets", type=Path, default=None,
                       help="LOC_synset_mapping.txt or words.txt, when class names are words rather than wnids")
    boxes.add_argument("--refine", default="box", choices=REFINES.names(), help=REFINES.describe())
    boxes.add_argument("--image-size", type=int, default=84, help="the size the split is loaded at (default 84)")
    boxes.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding processes")
    boxes.set_defaults(_data_run=run_boxes)

    coarse = sub.add_parser("boxes-from-masks", help="a mask file of boxes around a split's true masks")
    add_data_arguments(coarse)
    coarse.set_defaults(dataset="synthetic")
    coarse.add_argument("--split", required=True, choices=SPLITS)
    coarse.add_argument("--out", required=True, type=Path, help="mask file to write (FILE.npz)")
    coarse.add_argument("--image-size", type=int, default=84)
    coarse.add_argument("--shape", default="component", choices=BOX_SHAPES.names(), help=BOX_SHAPES.describe())
    coarse.set_defaults(_data_run=run_boxes_from_masks)


def run(args: argparse.Namespace) -> int:
    return args._data_run(args)


def run_info(args: argparse.Namespace) -> int:
    common.check_flags(args, {"image_size": common.IMAGE_SIZE})
    options = data_option_values(args)
    layout = detect_layout(args.dataset, args.root, options)
    where = "built in, generated in memory" if args.root is None else str(Path(args.root).resolve())
    print(f"{args.dataset} ({where}), layout: {layout}")
    print(f"{'split':<6} {'classes':>8} {'images':>8}  cached at {args.image_size} px")
    for split in SPLITS:
        info = split_info(args.dataset, args.root, split, args.image_size, options)
        print(f"{split:<6} {info['classes']:>8} {info['images']:>8}  {CACHE_STATE[info['cached']]}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    cfg = SynthConfig(seed=args.seed, image_size=args.image_size, images_per_class=args.images_per_class,
                      shortcut_rate=args.shortcut_rate, objects=args.objects,
                      novel_backgrounds=args.novel_backgrounds)
    check_writable(args.out, folder=True)
    write_synthetic(args.out, cfg)
    print(f"wrote the synthetic benchmark to {args.out} (read it with --dataset imagefolder --root {args.out})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    common.check_flags(args, {"image_size": common.IMAGE_SIZE, "n_classes": common.AT_LEAST_ONE,
                              "per_class": common.AT_LEAST_ONE, "seed": common.SEED})
    check_writable(args.out)
    options = data_option_values(args)
    split = load_split(args.dataset, args.root, args.split, args.image_size, options)
    if args.masks is not None:
        split, _ = with_mask_file(split, args.masks)
    save_grid(split, args.out, args.n_classes, args.per_class, seed=args.seed)
    layout = detect_layout(args.dataset, args.root, options)
    outlines = "no masks" if split.masks is None else f"mask outlines in yellow: {layout}"
    print(f"wrote {args.out} ({outlines})")
    return 0


def _check_out(out: Path) -> Path:
    if out.suffix != ".npz":
        raise UserError("a mask file's name must end in .npz", out)
    return check_writable(out)


def run_boxes(args: argparse.Namespace) -> int:
    splits = list(dict.fromkeys(args.split))
    if len(splits) > 1 and "{split}" not in args.out:
        raise UserError("with several splits, --out must hold {split} (e.g. masks/mini-{split}.npz)", args.out)
    coverage, written = {}, []
    for name in splits:
        out = _check_out(Path(args.out.replace("{split}", name)))
        request = BoxRequest(dataset=args.dataset, root=args.root, split=name, imagenet_train=args.imagenet_train,
                             boxes=args.boxes, parts=out.with_name(out.name + ".parts"), image_size=args.image_size,
                             synsets=args.synsets, refine=args.refine, workers=args.workers)
        split, result = build_box_masks(request, show_progress=True)
        written.append(write_mask_file(out, split, result.masks, result.has_mask, result.source, args.refine))
        coverage[split.name] = result.coverage
    header = ("split", "images", "matched", "with boxes", "by name", "by content", "ambiguous", "distant")
    print(markdown_table(header, coverage_table(coverage)))
    for out in written:
        print(f"wrote {out} (masks: {args.refine})")
    return 0


def run_boxes_from_masks(args: argparse.Namespace) -> int:
    common.check_flags(args, {"image_size": common.IMAGE_SIZE})
    out = _check_out(args.out)
    split = load_split(args.dataset, args.root, args.split, args.image_size)
    if split.masks is None:
        raise UserError(f"{split.name} has no true masks to draw boxes around", args.root)
    boxes = boxes_from_masks(split.masks, args.shape)
    has_mask = boxes.any((1, 2))
    write_mask_file(out, split, boxes, has_mask, [f"{args.shape} box" if h else "" for h in has_mask],
                    f"boxes-from-masks:{args.shape}")
    print(f"wrote {out}: {int(has_mask.sum())} of {len(has_mask)} images with a box mask "
          f"(foreground {boxes.mean():.3f} of the pixels, true masks {split.masks.mean():.3f})")
    return 0
