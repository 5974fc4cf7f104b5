"""The gpu-marked checks (stage a): the CUDA paths, each against a CPU fp32 oracle where one exists.

``tests/test_gpu.py`` runs them under pytest (``-m gpu``, skipped without CUDA); stage a runs that
file, or, where pytest is missing, :func:`run_builtin`. Each check takes a scratch folder and a device
name ("cuda"; "cpu" in the dry run, where the oracle comparisons hold trivially) and raises
AssertionError when the device disagrees. Tiny sizes: the built-in synthetic set at 16 px, the tiny
backbone, ``configs/synthetic-tiny-*.yaml``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import torch

from fewshot_cam.bench._api import (
    CAM_METHODS,
    FeaturesAndHead,
    LossConfig,
    ModelConfig,
    Objective,
    attribute_images,
    autocast_for,
    build_model,
    classifier_scorer,
    cli_main,
    load_model,
    load_split,
    objective_loss,
    pretrain_module,
    read_metrics,
    read_result,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {loss: REPO / "configs" / f"synthetic-tiny-{loss}.yaml" for loss in ("ce", "camloss")}
FAST = ("--set", "run.tensorboard=false", "--set", "run.progress=false", "--set", "run.amp=true",
        "--set", "run.channels_last=true")
EPISODES = 40


def cli(*argv: object) -> None:
    code = cli_main([str(a) for a in argv])
    assert code == 0, f"fewshot-cam {' '.join(map(str, argv))} exited {code}"


def pretrain(out: Path, device: str, loss: str, epochs: int = 2, resume: bool = False) -> Path:
    """Tiny pretraining through the CLI (bf16 + channels-last on CUDA); its run folder."""
    cli("pretrain", "--config", CONFIGS[loss], "--out", out, "--device", device, "--epochs", epochs, *FAST,
        *(["--resume"] if resume else []))
    records = read_metrics(out / "metrics.jsonl")
    assert len(records) == epochs and all(torch.isfinite(torch.tensor(r["loss"])) for r in records), records
    return out


def check_step_matches_cpu(device: str, loss: str) -> None:
    """One bf16 + channels-last training loss on ``device`` equals the fp32 CPU loss (2%)."""
    torch.manual_seed(0)
    cpu = build_model(ModelConfig(backbone="tiny"), 10).eval()  # eval: no dropout, BN from running stats
    dev = build_model(ModelConfig(backbone="tiny"), 10).to(device).eval()
    dev.load_state_dict(cpu.state_dict())
    if device.startswith("cuda"):
        dev = dev.to(memory_format=torch.channels_last)
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    cfg = LossConfig(loss=loss, alpha=1.0, warmup_epochs=0)
    want = objective_loss(Objective(cfg, cpu.head), FeaturesAndHead(cpu), x, y, 0)[0]
    xd = x.to(device).contiguous(memory_format=torch.channels_last)
    with autocast_for(torch.device(device), amp=True):
        got = objective_loss(Objective(cfg, dev.head), FeaturesAndHead(dev), xd, y.to(device), 0)[0]
    assert torch.isclose(got.float().cpu(), want, rtol=2e-2), (loss, float(got), float(want))


def interrupted_at(epoch: int):
    """A stand-in for ``train_one_epoch`` that raises KeyboardInterrupt as epoch ``epoch`` starts
    (``train_one_epoch(state, objective, epoch, autocast)``: the epoch is its 3rd positional argument)."""
    real = pretrain_module.train_one_epoch

    def train_one_epoch(*args, **kwargs):
        if args[2] == epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return real, train_one_epoch


def check_resume(tmp: Path, device: str) -> None:
    """Interrupted in epoch 2 and resumed, a run ends where an uninterrupted one does (CUDA: within
    bf16 / atomics noise)."""
    whole = pretrain(tmp / "whole", device, "ce", epochs=2)
    real, pretrain_module.train_one_epoch = interrupted_at(2)
    try:
        code = cli_main([str(a) for a in ("pretrain", "--config", CONFIGS["ce"], "--out", tmp / "parts", "--device",
                                          device, "--epochs", 2, *FAST)])
    finally:
        pretrain_module.train_one_epoch = real
    assert code == 130, code
    parts = pretrain(tmp / "parts", device, "ce", epochs=2, resume=True)
    a = torch.load(whole / "last.pt", map_location="cpu", weights_only=False)["model"]
    b = torch.load(parts / "last.pt", map_location="cpu", weights_only=False)["model"]
    for key in a:
        if a[key].is_floating_point():
            assert torch.allclose(a[key], b[key], rtol=1e-2, atol=1e-3), key
        else:
            assert torch.equal(a[key], b[key]), key


def _eval(checkpoint: Path, device: str, out: Path) -> list[float]:
    cli("eval", "--checkpoint", checkpoint, "--ways", 5, "--shots", 1, "--queries", 5, "--episodes", EPISODES,
        "--methods", "protonet", "--device", device, "--json", out)
    return read_result(out).results[0].per_episode


def check_eval(tmp: Path, device: str, run: Path) -> None:
    """ProtoNet per-episode accuracies on ``device`` (bf16 features) match the CPU's (fp32) on >= 75% of
    the episodes (bf16 may flip a near-tie query; broken device features agree on few), means within 3 points."""
    got, want = _eval(run / "last.pt", device, tmp / "dev.json"), _eval(run / "last.pt", "cpu", tmp / "cpu.json")
    same = sum(abs(a - b) < 1e-9 for a, b in zip(got, want))
    assert same >= 0.75 * len(want), f"{same} of {len(want)} episodes agree"
    assert abs(sum(got) - sum(want)) / len(want) < 3, (sum(got) / len(got), sum(want) / len(want))


def check_cam(tmp: Path, device: str, run: Path, method: str) -> None:
    """``fewshot-cam cam --method`` works on ``device``, and its maps are the CPU's (mean |diff| < 0.1)."""
    cli("cam", "--checkpoint", run / "last.pt", "--method", method, "--n", 8, "--pictures", 8, "--out", tmp / method,
        "--device", device)
    assert list((tmp / method).glob("*.png")) and (tmp / method / "localization.json").exists()
    images = load_split("synthetic", None, "test", 16).images[:8]
    maps = {}
    for where in (device, "cpu"):
        model = load_model(run / "last.pt", map_location=torch.device(where))[0].eval()
        maps[where] = attribute_images(
            method, classifier_scorer(model), images, torch.device(where), batch_size=8
        ).cpu()
    diff = (maps[device] - maps["cpu"]).abs().mean()
    assert diff < 0.1, f"{method}: mean |device - cpu| = {diff:.3f}"


def check_ablate(tmp: Path, device: str, run: Path) -> None:
    """``fewshot-cam ablate`` on ``device``: its 'original' condition is the eval command's accuracies."""
    out = tmp / "ablation.json"
    cli("ablate", "--checkpoint", run / "last.pt", "--ways", 5, "--shots", 1, "--queries", 5, "--episodes", EPISODES,
        "--device", device, "--json", out)
    conditions = next(iter(json.loads(out.read_text())["models"].values()))["conditions"]
    assert {"original", "foreground", "background", "bg-tiled", "mixed-same", "mixed-rand"} <= set(conditions)
    original = conditions["original"][0]["per_episode"]
    evaluated = _eval(run / "last.pt", device, tmp / "eval.json")
    same = sum(abs(a - b) < 1e-9 for a, b in zip(original, evaluated))
    assert same >= 0.9 * len(evaluated), f"{same} of {len(evaluated)} episodes agree"


NCCL_WORKER = """
import torch, torch.distributed as dist
torch.cuda.set_device(0)
dist.init_process_group("nccl")
x = torch.ones(4, device="cuda")
dist.all_reduce(x)
assert torch.equal(x, torch.full((4,), float(dist.get_world_size()), device="cuda")), x
dist.destroy_process_group()
print("nccl all_reduce ok, world size", x[0].item())
"""


def check_torchrun(tmp: Path) -> None:
    """torchrun at world size 1 on CUDA: ``fewshot-cam pretrain`` runs under it, and NCCL all-reduces."""
    env = os.environ | {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    worker = tmp / "nccl_worker.py"
    worker.write_text(NCCL_WORKER)
    for cmd in ([*launch, str(worker)],
                [*launch, "-m", "fewshot_cam", "pretrain", "--config", str(CONFIGS["ce"]), "--out", str(tmp / "ddp"),
                 "--device", "cuda", "--epochs", "1", *FAST]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp / "ddp" / "last.pt").exists()


def run_builtin(tmp: Path, device: str) -> dict[str, str]:
    """Every check without pytest: {name: "passed" | "failed: ..."}."""
    outcomes: dict[str, str] = {}

    def attempt(name: str, fn, *args) -> None:
        try:
            fn(*args)
            outcomes[name] = "passed"
        except Exception as err:  # a check's failure is reported, the next check still runs
            traceback.print_exc()
            outcomes[name] = f"failed: {type(err).__name__}: {err}"[:300]

    for loss in CONFIGS:
        attempt(f"step_matches_cpu[{loss}]", check_step_matches_cpu, device, loss)
        attempt(f"pretrain[{loss}]", pretrain, tmp / f"run-{loss}", device, loss)
    run = tmp / "run-ce"
    attempt("resume", check_resume, tmp / "resume", device)
    attempt("eval", check_eval, _mk(tmp / "eval"), device, run)
    for method in CAM_METHODS:
        attempt(f"cam[{method}]", check_cam, _mk(tmp / "cam"), device, run, method)
    attempt("ablate", check_ablate, _mk(tmp / "ablate"), device, run)
    if device.startswith("cuda"):
        attempt("torchrun", check_torchrun, _mk(tmp / "torchrun"))
    return outcomes


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
