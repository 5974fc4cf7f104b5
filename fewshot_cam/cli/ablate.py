"""``fewshot-cam ablate``: background reliance of one or more checkpoints on the same episodes and swaps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fewshot_cam.analysis.ablation import MODIFY
from fewshot_cam.analysis.ablation_masks import BAD_MASKS
from fewshot_cam.analysis.ablation_run import (
    FORMAT,
    MASK_SOURCES,
    OWN_CAM_WARNING,
    AblationRequest,
    format_ablation,
    run_background_ablation,
)
from fewshot_cam.analysis.conditions import CONDITIONS, check_conditions
from fewshot_cam.analysis.fills import DEFAULT_FILL, FILLS
from fewshot_cam.analysis.pictures import save_condition_bars
from fewshot_cam.cli import common
from fewshot_cam.cli import eval as eval_cli
from fewshot_cam.cli.common import add_alias, data_option_values, pick_device, resolved_settings
from fewshot_cam.data.mask_file import is_mask_file
from fewshot_cam.evaluation.run import EvalRequest
from fewshot_cam.fewshot.episodic import check_methods
from fewshot_cam.io import check_writable, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", default=None, metavar="[LABEL=]PATH",
                        help="checkpoint to ablate; repeat to compare several on the same episodes and swaps "
                             "(LABEL names it in the table, default the path; default: the final checkpoint of "
                             "the latest finished run under runs/)")
    eval_cli.add_shared_arguments(parser)  # setting, episodes, data, device, --json: as for eval
    parser.set_defaults(methods="protonet")
    parser.add_argument("--conditions", default="all",
                        help=f"comma-separated, or all (default): {CONDITIONS.describe()}")
    parser.add_argument("--modify", default="queries", choices=MODIFY,
                        help="change only the queries, the support set staying original (default, as Xiao et al.), "
                             "or supports and queries alike")
    parser.add_argument("--masks", default="gt", type=mask_source, metavar="{" + ",".join(MASK_SOURCES) + ",FILE.npz}",
                        help="foreground masks: the dataset's ground truth, a mask file from 'data boxes' "
                             "(episodes then use only images with a mask), or a mask model's attribution maps")
    parser.add_argument(
        "--mask-model",
        default=None,
        help="checkpoint whose maps give the masks (default: each evaluated model's own, with a warning)",
    )
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="foreground = normalised map >= this")
    parser.add_argument("--mask-dilate", type=int, default=0, metavar="PIXELS",
                        help="grow every foreground mask by PIXELS (square max-pool) first: foreground-only keeps "
                             "the object's soft rim, background-only removes it (default 0)")
    parser.add_argument("--bad-masks", default="error", choices=BAD_MASKS,
                        help="an all-empty or all-full mask: stop with an error naming it (default), or skip the "
                             "episodes that use it and count them")
    parser.add_argument("--fill", default=DEFAULT_FILL, choices=FILLS.names(),
                        help=f"what replaces removed pixels: {FILLS.describe()}")
    parser.set_defaults(image_batch=64)  # --image-batch: images (and Score-CAM masked copies) per pass
    add_alias(parser, "--cam-batch-size", "--image-batch", int)
    parser.add_argument("--plot", default=None, help="write a bar chart (PNG) of every condition per model here")


def mask_source(value: str) -> str:
    if value in MASK_SOURCES or is_mask_file(value):
        return value
    raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from {', '.join(MASK_SOURCES)} or a FILE.npz)")


def checkpoints(values: list[str]) -> tuple[tuple[str, str], ...]:
    """``[LABEL=]PATH`` flags -> ((label, path), ...); a LABEL has no '/' and the whole value is not a file."""
    out = []
    for value in values:
        label, sep, path = value.partition("=")
        if sep and "/" not in label and label and not Path(value).exists():
            out.append((label, path))
        else:
            out.append((value, value))
    return tuple(out)


def request_from_args(args: argparse.Namespace) -> AblationRequest:
    """The parsed flags as an :class:`AblationRequest`."""
    models = checkpoints(args.checkpoint)
    return AblationRequest(
        episodes=EvalRequest(
            checkpoint=models[0][1], ways=args.ways, shots=args.shots, queries=args.queries,
            episodes=args.episodes, seed=args.seed, episode_file=args.episode_file,
            methods=tuple(check_methods(args.methods)), split=args.split, dataset=args.dataset, root=args.root,
            image_size=args.image_size, backbone=args.backbone, batch_size=args.episode_batch,
            feature_batch_size=args.image_batch, data_options=data_option_values(args),
        ),
        checkpoints=models, masks=args.masks, mask_model=args.mask_model, mask_threshold=args.mask_threshold,
        mask_dilate=args.mask_dilate, fill=args.fill, conditions=tuple(check_conditions(args.conditions)),
        modify=args.modify, bad_masks=args.bad_masks, cam_batch_size=args.image_batch,
    )


def run(args: argparse.Namespace) -> int:
    if not args.checkpoint:
        args.checkpoint = [eval_cli.latest_checkpoint(args)]
    common.check_flags(args, {"image_batch": common.AT_LEAST_ONE, "episode_batch": common.AT_LEAST_ONE,
                              "mask_dilate": (0, None)})
    request = request_from_args(args)
    for path in (args.json, args.plot):
        if path:
            check_writable(path)  # before any episode is run
    if request.own_cam:
        print(f"fewshot-cam: warning: {OWN_CAM_WARNING.format(masks=args.masks)}", file=sys.stderr)
    record = run_background_ablation(request, pick_device(args.device), progress=True)
    print(format_ablation(record))
    if args.json:
        record = record | {"settings": resolved_settings(args)}
        print(f"wrote {write_json(args.json, record, FORMAT, indent=None)}")
    if args.plot:
        print(f"wrote {save_condition_bars(args.plot, record)}")
    return 0
