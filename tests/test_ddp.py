"""DistributedDataParallel: two gloo processes on the CPU keep identical weights, and the epoch runner at
world size 2 (each rank on its own half of every global batch) equals one process on the whole batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from fewshot_cam.config import load_config
from fewshot_cam.models.checkpoint import load_checkpoint
from fewshot_cam.training import distributed
from fewshot_cam.training.config import PretrainConfig
from fewshot_cam.training.pretrain import fit
from fewshot_cam.training.runner import run_epoch
from fewshot_cam.training.state import RunState

TINY = Path(__file__).parent.parent / "configs" / "synthetic-tiny-ce.yaml"
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, out: str, port: int) -> None:
    """One rank, started the way torchrun would: env vars, then the same calls as the CLI."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cfg = load_config(PretrainConfig, TINY, [f"run.out={out}/run", "optim.epochs=1", "optim.steps_per_epoch=3",
                                            "val.episodes=10"])
    info = distributed.from_env()
    device = distributed.local_device(torch.device("cpu"), info)
    with distributed.process_group(info, device):
        state = fit(cfg, device, info)
    torch.save(state.model.state_dict(), Path(out) / f"rank{rank}.pt")


def test_two_ranks_keep_identical_weights(tmp_path):
    mp.start_processes(_worker, args=(str(tmp_path), _free_port()), nprocs=WORLD, join=True, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")  # written by rank 0 only
    saved = ckpt["model"]
    assert ckpt["epoch"] == 1
    for key in ranks[0]:  # parameters (all-reduced gradients) and BatchNorm statistics (broadcast)
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        assert torch.equal(ranks[0][key], saved[key]), key
    # The weights did train (so equality above is not that of two untouched copies).
    assert ckpt["optimizer"]["state"]


def _linear_epoch(info: distributed.DistInfo) -> tuple[dict, list[list[int]], dict]:
    """One epoch of run_epoch on a BatchNorm-free model (so one process on a global batch is the exact
    oracle): 4 global batches of 8 from a fixed permutation of 32 labelled points."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 4, (32,), generator=g)
    torch.manual_seed(1)
    model = nn.Linear(6, 4)
    forward = distributed.wrap(model, torch.device("cpu"), info)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    cfg = SimpleNamespace(run=SimpleNamespace(seed=0, progress=False, log_every=2))
    state = RunState(cfg, torch.device("cpu"), info, model, forward, optimizer, None, None, (), None, None)
    seen: list[list[int]] = []

    def step(i, index, generator):
        seen.append(index.tolist())
        loss = F.cross_entropy(forward(x[index]), y[index])  # this rank's mean
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    batches = torch.randperm(32, generator=torch.Generator().manual_seed(2)).view(4, 8)
    means = run_epoch(state, batches, step, ("loss",), epoch=1)
    return means, seen, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _runner_worker(rank: int, out: str, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    info = distributed.from_env()
    with distributed.process_group(info, torch.device("cpu")):
        result = _linear_epoch(info)
    torch.save(result, Path(out) / f"runner{rank}.pt")


def test_two_ranks_equal_one_process_on_the_same_global_batches(tmp_path):
    mp.start_processes(_runner_worker, args=(str(tmp_path), _free_port()), nprocs=WORLD, join=True,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"runner{r}.pt") for r in range(WORLD)]
    single_means, single_seen, single_weights = _linear_epoch(distributed.DistInfo())
    # The ranks saw different data: disjoint halves whose union is each global batch.
    for step, whole in enumerate(single_seen):
        a, b = ranks[0][1][step], ranks[1][1][step]
        assert not set(a) & set(b) and sorted(a + b) == sorted(whole) and len(a) == len(whole) // 2
    for means, _, weights in ranks:
        for key, value in single_weights.items():
            torch.testing.assert_close(weights[key], value, rtol=1e-5, atol=1e-6)
        assert means["loss"] == pytest.approx(single_means["loss"], rel=1e-5)
    assert not torch.allclose(single_weights["weight"], _initial_weight())  # it trained


def _initial_weight() -> torch.Tensor:
    torch.manual_seed(1)
    return nn.Linear(6, 4).weight.detach()
