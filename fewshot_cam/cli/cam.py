"""``fewshot-cam cam``: heat-map pictures of one or two checkpoints, localisation against masks
(fixed threshold, MaxBoxAccV2, PxAP) and, with ``--faithfulness``, AD / IC and deletion / insertion.

The class each map explains is ``--target`` (:mod:`fewshot_cam.analysis.cam_targets`): by default
the image's own class, through a prototype on novel classes, the true class on base classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_cam.analysis.attribution import METHODS
from fewshot_cam.analysis.cam_pictures import LOCALIZATION_FORMAT, sample_rows, write_pictures
from fewshot_cam.analysis.cam_scores import faithfulness_scores, localization_scores
from fewshot_cam.analysis.cam_targets import TARGETS, build_target, default_target, targeted_maps
from fewshot_cam.analysis.faithfulness import FILLS
from fewshot_cam.cli import common
from fewshot_cam.cli.common import (
    add_alias,
    add_data_arguments,
    add_device_argument,
    add_settings_arguments,
    data_option_values,
    pick_device,
    resolved_settings,
    write_settings,
)
from fewshot_cam.data.checks import check_split_masks
from fewshot_cam.data.mask_file import with_mask_file
from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.results import markdown_table
from fewshot_cam.evaluation.run import EvalRequest, ground_truth, request_split
from fewshot_cam.io import check_writable, write_json
from fewshot_cam.models.checkpoint import load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", default=None,
                        help="checkpoint to draw; give it twice (e.g. CE and CAM-loss) for side-by-side columns")
    add_data_arguments(parser)
    add_settings_arguments(parser, "images=64")
    parser.add_argument("--split", default="test", help="train, val or test (default test)")
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: the first checkpoint's)")
    parser.add_argument("--method", default="cam", choices=METHODS.names(), help=METHODS.describe())
    parser.add_argument("--images", type=int, default=16,
                        help="images sampled from the split (pictures and localisation)")
    add_alias(parser, "--n", "--images", int)
    parser.add_argument("--pictures", type=int, default=16, help="how many of them to draw (8 rows per PNG)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image sample")
    parser.add_argument("--cam-threshold", type=float, default=0.2,
                        help="localisation: fraction of the map's max kept as foreground")
    add_alias(parser, "--threshold", "--cam-threshold", float)
    parser.add_argument("--image-batch", type=int, default=64, help="images (and Score-CAM masked copies) per pass")
    add_alias(parser, "--batch-size", "--image-batch", int)
    parser.add_argument("--masks", default=None, type=Path, metavar="FILE.npz",
                        help="score against a mask file's masks (from 'data boxes'); samples only images with one")
    parser.add_argument("--target", default="auto", choices=["auto", *TARGETS.names()],
                        help=f"class each map explains; auto: gt on the checkpoint's own classes, else proto. "
                             f"{TARGETS.describe()}")
    parser.add_argument("--support-shots", type=int, default=5,
                        help="--target proto/caam on novel classes: support images per class prototype "
                             "(not among --images)")
    parser.add_argument("--faithfulness", action="store_true",
                        help="also report Average Drop / Increase in Confidence and deletion / insertion AUC")
    parser.add_argument("--steps", type=int, default=50, help="faithfulness: deletion / insertion steps")
    parser.add_argument(
        "--deletion-fill", default="zeros", choices=FILLS, help="faithfulness: what deleted pixels become"
    )
    parser.add_argument("--out", default=None, type=Path, help="folder for the PNGs (and localization.json)")
    add_device_argument(parser)


def labels_for(paths: list[str]) -> list[str]:
    """Short distinct column labels: file stems, or parent/stem when stems repeat."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]


def run(args: argparse.Namespace) -> int:
    if not args.checkpoint or args.out is None:
        raise UserError("cam needs --checkpoint (once or twice) and --out (flags or --config)")
    args.out = Path(args.out)
    common.check_flags(args, {"images": common.AT_LEAST_ONE, "pictures": (0, None), "seed": common.SEED,
                              "cam_threshold": (0, 1), "image_batch": common.AT_LEAST_ONE,
                              "steps": common.AT_LEAST_ONE, "support_shots": common.AT_LEAST_ONE,
                              "image_size": common.IMAGE_SIZE})
    check_writable(args.out, folder=True)
    device = pick_device(args.device)
    loaded = [load_model(path, map_location=device) for path in args.checkpoint]
    request = EvalRequest(checkpoint=args.checkpoint[0], split=args.split, dataset=args.dataset, root=args.root,
                          image_size=args.image_size, data_options=data_option_values(args))
    split, dataset, _ = request_split(loaded[0][1], request)
    eligible = None if args.masks is None else with_mask_file(split, args.masks)
    split = split if eligible is None else eligible[0]
    rows = sample_rows(split, args.images, args.seed)
    maps, scores, targets = checkpoint_maps(args, loaded, split, rows, device)
    for path in write_pictures(args.out, split, rows, maps, args.method, args.pictures):
        print(f"wrote {path}")
    print(f"wrote {write_settings(args.out / 'settings.yaml', args)}")
    record = {"method": args.method, "dataset": dataset, "split": args.split, "n": len(rows), "seed": args.seed,
              "threshold": args.cam_threshold, "checkpoints": args.checkpoint, "targets": targets,
              "settings": resolved_settings(args)}
    for label, t in targets.items():
        print(f"{label}: {args.method} maps of the {t['explains']}")
    if args.faithfulness:
        print_faithfulness(scores, args)
        record["faithfulness"] = scores
    if split.masks is None:
        print(f"{split.name} has no ground-truth masks: no localisation scores")
    else:
        check_split_masks(split, rows)  # an all-empty or all-full mask would score a meaningless IoU
        found = {label: localization_scores(m, split.masks[rows], args.cam_threshold) for label, m in maps.items()}
        truth = ground_truth(loaded[0][1], request)
        print_localization(found, args, f"{split.name} (ground truth: {truth})", len(rows))
        record["localization"] = {label: s["fixed"] for label, s in found.items()}
        record["maxboxacc"] = {label: s["maxboxacc"] for label, s in found.items()}
        record["pxap"] = {label: s["pxap"] for label, s in found.items()}
        record["ground_truth"] = truth
        record["mask_file"] = None if args.masks is None else str(args.masks)
        record["eligible_per_class"] = None if eligible is None else eligible[1]
    if split.masks is not None or args.faithfulness:
        print(f"wrote {write_json(args.out / 'localization.json', record, LOCALIZATION_FORMAT)}")
    return 0


def checkpoint_maps(args: argparse.Namespace, loaded: list, split, rows, device) -> tuple[dict, dict, dict]:
    """label -> maps (N, H, W), faithfulness scores (with --faithfulness) and the target each explains."""
    images, progress = split.images[rows], True
    maps, scores, targets = {}, {}, {}
    for label, (model, ckpt) in zip(labels_for(args.checkpoint), loaded):
        model.eval()
        target = default_target(split, ckpt) if args.target == "auto" else args.target
        spec = build_target(target, model, ckpt, split, rows, args.support_shots, args.seed)
        found = targeted_maps(args.method, spec, images, device, args.image_batch, progress)
        maps[label], targets[label] = found.cpu().numpy(), {"target": spec.target, "explains": spec.description}
        if args.faithfulness:
            scores[label] = faithfulness_scores(spec, images, found, device, args.steps, args.image_batch,
                                                args.deletion_fill)
    return maps, scores, targets


def print_localization(found: dict, args: argparse.Namespace, split_name: str, n: int) -> None:
    rows = [(label, f"{s['fixed']['loc_acc']:.1f}", f"{s['fixed']['mean_iou']:.3f}",
             f"{s['maxboxacc']['maxboxacc_v2']:.1f}",
             " / ".join(f"{v:.1f}" for v in s["maxboxacc"]["maxboxacc"].values()),
             f"{s['pxap']['pxap']:.1f}", str(s["fixed"]["n"])) for label, s in found.items()]
    print(f"\n{args.method} localisation on {n} images of {split_name}:\n")
    header = ("checkpoint", f"loc. acc % (box IoU >= 0.5 at {args.cam_threshold} of max)", "mean mask IoU",
              "MaxBoxAccV2 %", "MaxBoxAcc IoU 0.3 / 0.5 / 0.7", "PxAP %", "images")
    print(markdown_table(header, rows))


def print_faithfulness(scores: dict, args: argparse.Namespace) -> None:
    rows = [(label, f"{s['average_drop']:.1f}", f"{s['increase_in_confidence']:.1f}", f"{s['deletion_auc']:.3f}",
             f"{s['insertion_auc']:.3f}", str(s["n"])) for label, s in scores.items()]
    print(
        f"\n{args.method} faithfulness ({args.steps} steps, deletion to {args.deletion_fill}, insertion from blur):\n"
    )
    header = ("checkpoint", "Average Drop % (lower better)", "Increase in Conf. %", "deletion AUC (lower)",
              "insertion AUC (higher)", "images")
    print(markdown_table(header, rows))
