"""DistributedDataParallel pretraining: two gloo processes on the CPU keep identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from fewshot_cam.config import load_config
from fewshot_cam.models.checkpoint import load_checkpoint
from fewshot_cam.training import distributed
from fewshot_cam.training.config import PretrainConfig
from fewshot_cam.training.pretrain import fit

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
