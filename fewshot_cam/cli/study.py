"""``fewshot-cam study``: scripts/run-benchmark.sh's job on any dataset and recipe, resumable.

Steps, each skipped when its output exists (an interrupted pretraining resumes from last.pt):

1. pretrain ``--recipe`` with cross-entropy and with CE + CAM-loss    -> OUT/ce, OUT/camloss
2. evaluate both on frozen episodes with every evaluator (per shot)  -> OUT/eval-{ce,camloss}-Kshot.json
3. paired report of the two on the same episodes                     -> OUT/report-Kshot.json
4. CAM pictures, with localisation where the split has masks         -> OUT/cams/
5. background analysis (ground-truth masks; only where masks exist)  -> OUT/ablation-test.json
6. one report, each number beside its published counterpart         -> OUT/study.md, OUT/study.json

Every step is the existing command (``pretrain``, ``eval``, ``report``, ``cam``, ``ablate``) run with
its flags; the study only decides what to run. ``--config study.yaml`` takes keys named like the flags.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from fewshot_cam.cli import run_command
from fewshot_cam.cli.common import (
    add_device_argument,
    add_settings_arguments,
    data_option_values,
    resolved_settings,
    write_settings,
)
from fewshot_cam.config import merge, parse_overrides
from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.published import SOURCES, published
from fewshot_cam.evaluation.results import markdown_table, read_result
from fewshot_cam.fewshot.episodic import METHODS
from fewshot_cam.io import atomic_write, write_json
from fewshot_cam.models.backbones import BACKBONE_METAVAR, backbone_choices
from fewshot_cam.models.runs import is_finished
from fewshot_cam.training.recipes import RECIPES

STUDY_FORMAT = "fewshot-cam-study/1"
LOSSES = ("ce", "camloss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic", help="dataset name (default: the built-in benchmark)")
    parser.add_argument("--root", default=None, help="dataset root folder (not needed for synthetic)")
    parser.add_argument("--recipe", default="camloss", choices=RECIPES.names(), help=RECIPES.describe())
    parser.add_argument("--backbone", default="conv4-2pool", choices=backbone_choices(), metavar=BACKBONE_METAVAR)
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: 32 for synthetic, else 84)")
    parser.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default: the recipe's)")
    parser.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                        help="pretraining config override for both runs (e.g. optim.batch_size=32; repeatable)")
    parser.add_argument("--shots", default="1,5", help="comma-separated shots of the 5-way evaluations")
    parser.add_argument("--episodes", type=int, default=None,
                        help="seeded episodes per evaluation (default: the shipped frozen file, else 2000)")
    parser.add_argument("--methods", default=",".join(METHODS.names()), help=f"evaluators; {METHODS.describe()}")
    parser.add_argument("--images", type=int, default=256, help="images of the CAM pictures and localisation")
    parser.add_argument("--out", type=Path, default=Path("runs/study"), help="study folder (default runs/study)")
    add_settings_arguments(parser, "recipe=rfs")
    add_device_argument(parser)


def pretrain_settings(args: argparse.Namespace, loss: str) -> dict:
    """The recipe, then the study's flags (and --set data.KEY read options), then --pretrain-set, for the
    run with ``loss``; the later steps read the data settings from the checkpoints."""
    size = args.image_size or (32 if args.dataset == "synthetic" else 84)
    data = {"dataset": args.dataset, "root": args.root, "image_size": size} | (data_option_values(args) or {})
    flags = {"data": data,
             "model": {"backbone": args.backbone}, "loss": {"loss": loss}, "run": {"device": args.device}}
    if args.epochs is not None:
        flags["optim"] = {"epochs": args.epochs}
    return merge(merge(RECIPES.get(args.recipe), flags), parse_overrides(args.pretrain_set))


def step(label: str, done: bool, argv: list) -> None:
    """Run one command unless its output exists."""
    if done:
        print(f"== {label}: done, skipped")
        return
    print(f"== {label}", flush=True)
    run_command([str(a) for a in argv])


def pretrain_runs(args: argparse.Namespace) -> dict[str, Path]:
    runs = {}
    for loss in LOSSES:
        folder = args.out / loss
        config = args.out / f"{loss}.pretrain.yaml"
        if not is_finished(folder):
            atomic_write(config, yaml.safe_dump(pretrain_settings(args, loss), sort_keys=False))
        resume = ["--resume"] if (folder / "last.pt").exists() else []
        step(f"pretrain {loss} -> {folder}", is_finished(folder), ["pretrain", "--config", config, "--out", folder,
                                                                   *resume])
        runs[loss] = folder
    return runs


def evaluations(args: argparse.Namespace, runs: dict[str, Path], shots: list[int]) -> dict:
    results = {}
    episodes = [] if args.episodes is None else ["--episodes", args.episodes]
    for k in shots:
        for loss, folder in runs.items():
            path = args.out / f"eval-{loss}-{k}shot.json"
            step(f"eval {loss}, 5-way {k}-shot", path.exists(), ["eval", "--checkpoint", folder, "--ways", 5,
                 "--shots", k, *episodes, "--methods", args.methods, "--device", args.device, "--json", path])
            results[(loss, k)] = path
        report = args.out / f"report-{k}shot.json"
        step(f"CE vs CAM-loss, 5-way {k}-shot (paired)", report.exists(),
             ["report", *(results[(loss, k)] for loss in runs), "--json", report])
    return results


def analyses(args: argparse.Namespace, runs: dict[str, Path]) -> bool:
    """CAM pictures (+ localisation) and, where masks exist, the background analysis; True if it ran."""
    cams = args.out / "cams"
    step("CAM pictures and localisation", (cams / "settings.yaml").exists(),
         ["cam", *(a for f in runs.values() for a in ("--checkpoint", f)), "--images", args.images,
          "--out", cams, "--device", args.device])
    if not (cams / "localization.json").exists():
        print("== background analysis: skipped (the split has no masks)")
        return False
    episodes = [] if args.episodes is None else ["--episodes", args.episodes]
    for loss, folder in runs.items():
        one = args.out / f"ablation-{loss}-test.json"
        step(f"background reliance, {loss}", one.exists(), ["ablate", "--checkpoint", folder, "--ways", 5,
             "--shots", 1, *episodes, "--masks", "gt", "--methods", "protonet,logreg", "--device", args.device,
             "--json", one])
    return True


def study_rows(args: argparse.Namespace, results: dict) -> list[dict]:
    rows = []
    for (loss, k), path in results.items():
        for method in read_result(path).results:
            ref = published(args.recipe, args.dataset, args.backbone, method.method, k)
            rows.append({"run": loss, "shots": k, "method": method.method, "mean": method.mean, "ci95": method.ci95,
                         "published": None if ref is None else {"mean": ref[0], "ci95": ref[1]}})
    return rows


def write_study(args: argparse.Namespace, rows: list[dict], ablation: bool) -> tuple[Path, Path]:
    table = markdown_table(("run", "5-way", "method", "accuracy % (95% CI)", "published (95% CI)"), [
        (r["run"], f"{r['shots']}-shot", r["method"], f"{r['mean']:.2f} +- {r['ci95']:.2f}",
         "-" if r["published"] is None else f"{r['published']['mean']:.2f} +- {r['published']['ci95']:.2f}")
        for r in rows])
    source = SOURCES.get(args.recipe, "none for this recipe")
    text = (f"# Study: {args.recipe} recipe, {args.backbone} on {args.dataset}\n\n{table}\n\n"
            f"Published numbers: {source} (only where the recipe, dataset, backbone and method match).\n"
            f"Paired CE vs CAM-loss: report-*shot.json. CAM pictures: cams/. Background analysis: "
            f"{'ablation-*-test.json' if ablation else 'not run (no masks)'}.\n")
    md = atomic_write(args.out / "study.md", text)
    record = {"recipe": args.recipe, "dataset": args.dataset, "backbone": args.backbone, "rows": rows,
              "published_source": source, "ablation": ablation, "settings": resolved_settings(args)}
    return md, write_json(args.out / "study.json", record, STUDY_FORMAT)


def run(args: argparse.Namespace) -> int:
    try:
        shots = [int(s) for s in str(args.shots).split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--shots must be comma-separated integers, got '{args.shots}'") from None
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    write_settings(args.out / "settings.yaml", args)
    runs = pretrain_runs(args)
    results = evaluations(args, runs, shots)
    ablation = analyses(args, runs)
    md, js = write_study(args, study_rows(args, results), ablation)
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0
