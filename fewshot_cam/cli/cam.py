"""``fewshot-cam cam``: heat-map pictures of one or two checkpoints, and localisation against masks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fewshot_cam.analysis.attribution import METHODS
from fewshot_cam.analysis.cam_pictures import (
    LOCALIZATION_FORMAT,
    localization_summary,
    model_maps,
    sample_rows,
    write_pictures,
)
from fewshot_cam.cli.common import add_data_arguments, add_device_argument, pick_device
from fewshot_cam.data.datasets import load_split
from fewshot_cam.evaluation.results import markdown_table
from fewshot_cam.evaluation.run import EvalRequest, data_settings
from fewshot_cam.io import write_json
from fewshot_cam.models.checkpoint import load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", required=True,
                        help="checkpoint to draw; give it twice (e.g. CE and CAM-loss) for side-by-side columns")
    add_data_arguments(parser)
    parser.add_argument("--split", default="test", help="train, val or test (default test)")
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: the first checkpoint's)")
    parser.add_argument("--method", default="cam", choices=METHODS.names(), help=METHODS.describe())
    parser.add_argument("--n", type=int, default=16, help="images sampled from the split (pictures and localisation)")
    parser.add_argument("--pictures", type=int, default=16, help="how many of them to draw (8 rows per PNG)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image sample")
    parser.add_argument("--threshold", type=float, default=0.2, help="localisation: fraction of the map's max kept")
    parser.add_argument("--batch-size", type=int, default=64, help="images (and Score-CAM masked copies) per pass")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs (and localization.json)")
    add_device_argument(parser)


def labels_for(paths: list[str]) -> list[str]:
    """Short distinct column labels: file stems, or parent/stem when stems repeat."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    loaded = [load_model(path, map_location=device) for path in args.checkpoint]
    request = EvalRequest(checkpoint=args.checkpoint[0], split=args.split, dataset=args.dataset, root=args.root,
                          image_size=args.image_size)
    dataset, root, image_size = data_settings(loaded[0][1], request)
    split = load_split(dataset, root, args.split, image_size)
    rows = sample_rows(split, args.n, args.seed)
    models = dict(zip(labels_for(args.checkpoint), (model for model, _ in loaded)))
    maps = model_maps(models, split.images[rows], args.method, args.batch_size, progress=sys.stderr.isatty())
    for path in write_pictures(args.out, split, rows, maps, args.method, args.pictures):
        print(f"wrote {path}")
    if split.masks is None:
        print(f"{split.name} has no ground-truth masks: no localisation scores")
        return 0
    scores = localization_summary(maps, split.masks[rows], args.threshold)
    table = [(label, f"{s['loc_acc']:.1f}", f"{s['mean_iou']:.3f}", str(s["n"])) for label, s in scores.items()]
    print(f"\n{args.method} localisation on {len(rows)} images of {split.name} (threshold {args.threshold} of max):\n")
    print(markdown_table(("checkpoint", "loc. acc % (box IoU >= 0.5)", "mean mask IoU", "images"), table))
    record = {"method": args.method, "dataset": dataset, "split": args.split, "n": len(rows), "seed": args.seed,
              "threshold": args.threshold, "checkpoints": args.checkpoint, "localization": scores}
    print(f"wrote {write_json(args.out / 'localization.json', record, LOCALIZATION_FORMAT)}")
    return 0
