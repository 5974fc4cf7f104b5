"""``fewshot-cam report``: one table across eval results, with paired comparisons on shared episodes."""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.report import build_report, format_report, write_report_csv
from fewshot_cam.evaluation.results import read_result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", help="result JSON files written by fewshot-cam eval --json")
    parser.add_argument("--baseline", default=None, help="compare every other run against this one only")
    parser.add_argument("--csv", default=None, help="also write the table here (paired rows: <stem>_paired.csv)")


def run_names(paths: list[Path]) -> list[str]:
    """File stems, or the parent folder / stem where stems repeat."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.results]
    names = run_names(paths)
    runs = list(zip(names, (read_result(p) for p in paths)))
    baseline = None
    if args.baseline is not None:
        matches = [n for n, p in zip(names, paths) if p.resolve() == Path(args.baseline).resolve()]
        if not matches:
            raise UserError("--baseline must be one of the result files given", args.baseline)
        baseline = matches[0]
    report = build_report(runs, baseline)
    print(format_report(report))
    if args.csv:
        for path in write_report_csv(args.csv, report):
            print(f"wrote {path}")
    return 0
