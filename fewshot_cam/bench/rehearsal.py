"""Stage f, a rehearsal of a miniImageNet run: a built-in set of miniImageNet's shape (64 train classes
x 600 images at 84 px, 16 val, 20 test; the synthetic benchmark drawn at size) written in
mini-ImageNet's pickle layout, then ``fewshot-cam pretrain`` with the RFS recipe
(``configs/mini-imagenet-resnet12-rfs.yaml``) for 2 timed epochs and ``fewshot-cam eval`` on 2,000
episodes, both through the CLI. The full recipe's wall clock is extrapolated as start-up +
100 x the last epoch (training and validation) + the evaluation.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fewshot_cam.bench._api import cli_main, read_metrics, read_result
from fewshot_cam.bench.context import Context
from fewshot_cam.bench.data import cached_split, write_mini_imagenet

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "mini-imagenet-resnet12-rfs.yaml"


def cli(*argv: object) -> float:
    """Run one fewshot-cam command in this process; its seconds (raises unless it exits 0)."""
    start = time.perf_counter()
    code = cli_main([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"fewshot-cam {' '.join(map(str, argv))} exited {code}")
    return time.perf_counter() - start


def draw(ctx: Context) -> Path:
    """The three splits, drawn (or reused from ``work``) and written as mini-ImageNet pickles."""
    s = ctx.sizes
    splits = {
        split: cached_split(ctx, split, s.rehearsal_classes, s.rehearsal_per_class)
        for split in ("train", "val", "test")
    }
    ctx.put("images", {split: len(data.images) for split, data in splits.items()})
    return write_mini_imagenet(ctx.work / "rehearsal-mini-imagenet", splits)


def run(ctx: Context) -> None:
    s = ctx.sizes
    root, seconds = ctx.timed(draw, ctx)
    ctx.put("draw_and_write_s", round(seconds, 1))
    out = ctx.work / "rehearsal-run"
    shutil.rmtree(out, ignore_errors=True)
    overrides = [
        f for o in ("run.progress=false", "run.tensorboard=false", *s.rehearsal_overrides) for f in ("--set", o)
    ]
    pretrain_s = cli("pretrain", "--config", CONFIG, "--root", root, "--epochs", s.rehearsal_epochs, "--out", out,
                     "--device", s.device, *overrides)
    epochs = read_metrics(out / "metrics.jsonl")
    epoch_s = [round(e["time"], 2) for e in epochs]
    ctx.put(
        "pretrain",
        {
            "wall_s": round(pretrain_s, 1),
            "epoch_s": epoch_s,
            "startup_s": round(pretrain_s - sum(epoch_s), 1),
            "last_train_acc": epochs[-1].get("train_acc"),
            "last_val_acc": epochs[-1].get("val_acc"),
        },
    )
    result_path = out / "eval.json"
    eval_s = cli("eval", "--checkpoint", out / "last.pt", "--ways", 5, "--shots", 1, "--episodes", s.method_episodes,
                 "--methods", "protonet", "--device", s.device, "--json", result_path)
    result = read_result(result_path).results[0]
    ctx.put("eval", {"episodes": s.method_episodes, "wall_s": round(eval_s, 1), "protonet_acc": round(result.mean, 2),
                     "ci95": round(result.ci95, 2)})
    full = pretrain_s - sum(epoch_s) + s.rehearsal_recipe_epochs * epoch_s[-1] + eval_s
    ctx.put(
        "extrapolated",
        {
            "recipe_epochs": s.rehearsal_recipe_epochs,
            "seconds": round(full),
            "hours": round(full / 3600, 2),
            "basis": "start-up + recipe_epochs x last epoch (train + val 600 episodes) + eval 2,000",
        },
    )
