"""``fewshot-cam report``: one table across eval results, with paired comparisons on shared episodes.

With ``--group LABEL=GLOB`` (repeatable) the results are combined over training seeds instead: each
group holds one result per seed (read from the JSON's ``train_seed``), and the report gives the mean
over seeds with its CI over seeds, each seed's episode CI, and comparisons paired by seed
(:mod:`fewshot_cam.evaluation.seeds`).
"""

from __future__ import annotations

import argparse
import glob
from dataclasses import asdict
from pathlib import Path

from fewshot_cam.cli.common import resolved_settings
from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.report import build_report, format_report, write_report_csv
from fewshot_cam.evaluation.results import read_result
from fewshot_cam.evaluation.seeds import build_seed_report, format_seed_report, seed_report_record
from fewshot_cam.io import check_writable, write_json

REPORT_FORMAT = "fewshot-cam-report/1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="*", help="result JSON files written by fewshot-cam eval --json")
    parser.add_argument("--group", action="append", default=[], metavar="LABEL=GLOB",
                        help="combine over training seeds: the results matching GLOB (one per seed, e.g. "
                             "'runs/ce/seed*/eval.json') form group LABEL; repeat per group")
    parser.add_argument("--baseline", default=None,
                        help="compare every other run (result file, or group LABEL with --group) against this one only")
    parser.add_argument("--csv", default=None, help="also write the table here (paired rows: <stem>_paired.csv)")
    parser.add_argument("--json", default=None, help="also write the report (with seed and episode counts) as JSON")


def run_names(paths: list[Path]) -> list[str]:
    """File stems, or the parent folder / stem where stems repeat."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def parse_groups(specs: list[str]) -> dict[str, list[Path]]:
    """["ce=runs/ce/seed*/eval.json", ...] -> {"ce": [paths, sorted]}; UserError for a bad or empty spec."""
    groups: dict[str, list[Path]] = {}
    for spec in specs:
        label, sep, pattern = spec.partition("=")
        if not sep or not label or not pattern:
            raise UserError(f"--group must be LABEL=GLOB, got '{spec}'")
        if label in groups:
            raise UserError(f"--group label '{label}' given twice")
        paths = sorted(Path(p) for p in glob.glob(pattern))
        if not paths:
            raise UserError(f"--group '{label}': no file matches", pattern)
        groups[label] = paths
    return groups


def run(args: argparse.Namespace) -> int:
    for path in (args.csv, args.json):
        if path:
            check_writable(path)
    if args.group:
        if args.results:
            raise UserError("give result files or --group, not both")
        return run_groups(args)
    if not args.results:
        raise UserError("give result files (or --group LABEL=GLOB)")
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
    if args.json:
        record = {"kind": "runs", "results": [asdict(r) for r in report.results],
                  "paired": [asdict(r) for r in report.paired], "notes": report.notes,
                  "settings": resolved_settings(args)}
        print(f"wrote {write_json(args.json, record, REPORT_FORMAT)}")
    return 0


def run_groups(args: argparse.Namespace) -> int:
    if args.csv:
        raise UserError("--csv is for single runs; use --json with --group")
    groups = {label: [(str(p), read_result(p)) for p in paths] for label, paths in parse_groups(args.group).items()}
    report = build_seed_report(groups, args.baseline)
    print(format_seed_report(report))
    if args.json:
        record = seed_report_record(report)
        record["groups"] = {label: [path for path, _ in results] for label, results in groups.items()}
        record["settings"] = resolved_settings(args)
        print(f"wrote {write_json(args.json, record, REPORT_FORMAT)}")
    return 0
