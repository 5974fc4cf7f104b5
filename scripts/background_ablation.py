"""Background reliance of several checkpoints (e.g. CE vs CAM-loss) on the same episodes, in one table.

    python scripts/background_ablation.py --model ce=runs/ce/best.pt --model camloss=runs/camloss/best.pt \\
        --ways 5 --shots 1 --episodes 600 --masks gt --plot ablation.png [--json ablation.json] [ablate flags]

Every flag of ``fewshot-cam ablate`` except ``--checkpoint`` is accepted and applies to every model.
With CAM-derived masks, pass ``--mask-model`` so every model is ablated with the same masks.
"""

from __future__ import annotations

import argparse
import sys

from fewshot_cam.analysis.ablation_run import format_ablation, run_background_ablation
from fewshot_cam.analysis.pictures import save_condition_bars
from fewshot_cam.cli import ablate
from fewshot_cam.cli.common import pick_device
from fewshot_cam.errors import UserError
from fewshot_cam.io import write_json


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(label -> checkpoint, the remaining ``ablate`` flags)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=CHECKPOINT")
    args, rest = parser.parse_known_args(argv)
    models = dict(m.split("=", 1) if "=" in m else (m, m) for m in args.model)
    return models, rest


def main(argv: list[str] | None = None) -> int:
    models, rest = parse(sys.argv[1:] if argv is None else argv)
    ablate_parser = argparse.ArgumentParser(prog="background_ablation.py")
    ablate.add_arguments(ablate_parser)
    records = {}
    for label, checkpoint in models.items():
        args = ablate_parser.parse_args([*rest, "--checkpoint", checkpoint])
        records[label] = run_background_ablation(ablate.request_from_args(args), pick_device(args.device))
    hashes = {r["episodes_hash"] for r in records.values()}
    if len(hashes) != 1:
        raise UserError("the models were evaluated on different episodes (their data settings differ)")
    print(format_ablation(records))
    if args.json:
        print(f"wrote {write_json(args.json, {'models': records}, 'fewshot-cam-ablation-models/1')}")
    if args.plot:
        ways = next(iter(records.values()))["ways"]
        print(f"wrote {save_condition_bars(args.plot, records, 100.0 / ways)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as err:
        print(f"background_ablation.py: error: {err}", file=sys.stderr)
        sys.exit(2)
