"""``fewshot-cam ablate``: few-shot accuracy on original, foreground-only and background-only images."""

from __future__ import annotations

import argparse
import sys

from fewshot_cam.analysis.ablation import FILLS
from fewshot_cam.analysis.ablation_run import (
    MASK_SOURCES,
    OWN_CAM_WARNING,
    AblationRequest,
    format_ablation,
    run_background_ablation,
)
from fewshot_cam.analysis.pictures import save_condition_bars
from fewshot_cam.cli import common
from fewshot_cam.cli import eval as eval_cli
from fewshot_cam.cli.common import add_alias, data_option_values, pick_device, resolved_settings
from fewshot_cam.data.mask_file import is_mask_file
from fewshot_cam.evaluation.run import EvalRequest
from fewshot_cam.fewshot.episodic import check_methods
from fewshot_cam.io import check_writable, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    eval_cli.add_shared_arguments(parser)  # checkpoint, setting, episodes, data, device, --json: as for eval
    parser.set_defaults(methods="protonet")
    parser.add_argument("--masks", default="gt", type=mask_source, metavar="{" + ",".join(MASK_SOURCES) + ",FILE.npz}",
                        help="foreground masks: the dataset's ground truth, a mask file from 'data boxes' "
                             "(episodes then use only images with a mask), or a mask model's attribution maps")
    parser.add_argument("--mask-model", default=None,
                        help="checkpoint whose maps give the masks (default: the evaluated model, with a warning)")
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="foreground = normalised map >= this")
    parser.add_argument("--fill", default="mean", choices=FILLS.names(),
                        help=f"what replaces removed pixels; {FILLS.describe()}")
    parser.set_defaults(image_batch=64)  # --image-batch: images (and Score-CAM masked copies) per pass
    add_alias(parser, "--cam-batch-size", "--image-batch", int)
    parser.add_argument("--plot", default=None, help="write a bar chart (PNG) of the three conditions here")


def mask_source(value: str) -> str:
    if value in MASK_SOURCES or is_mask_file(value):
        return value
    raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from {', '.join(MASK_SOURCES)} or a FILE.npz)")


def request_from_args(args: argparse.Namespace) -> AblationRequest:
    """The parsed flags as an :class:`AblationRequest` (also used by scripts/background_ablation.py)."""
    return AblationRequest(
        episodes=EvalRequest(
            checkpoint=args.checkpoint, ways=args.ways, shots=args.shots, queries=args.queries,
            episodes=args.episodes, seed=args.seed, episode_file=args.episode_file,
            methods=tuple(check_methods(args.methods)), split=args.split, dataset=args.dataset, root=args.root,
            image_size=args.image_size, backbone=args.backbone, batch_size=args.episode_batch,
            feature_batch_size=args.image_batch, data_options=data_option_values(args),
        ),
        masks=args.masks, mask_model=args.mask_model, mask_threshold=args.mask_threshold, fill=args.fill,
        cam_batch_size=args.image_batch,
    )


def run(args: argparse.Namespace) -> int:
    args.checkpoint = eval_cli.latest_checkpoint(args)
    common.check_flags(args, {"image_batch": common.AT_LEAST_ONE, "episode_batch": common.AT_LEAST_ONE})
    request = request_from_args(args)
    for path in (args.json, args.plot):
        if path:
            check_writable(path)  # before any episode is run
    if request.own_cam:
        print(f"fewshot-cam: warning: {OWN_CAM_WARNING.format(masks=args.masks)}", file=sys.stderr)
    record = run_background_ablation(request, pick_device(args.device), progress=True)
    print(format_ablation({args.checkpoint: record}))
    if args.json:
        print(f"wrote {write_json(args.json, record | {'settings': resolved_settings(args)}, record['format'])}")
    if args.plot:
        print(f"wrote {save_condition_bars(args.plot, {args.checkpoint: record}, 100.0 / record['ways'])}")
    return 0
