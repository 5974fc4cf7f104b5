"""The top kernels of a few steps (``torch.profiler``): why a throughput target is missed."""

from __future__ import annotations

from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def top_kernels(fn: Callable[[], object], device: torch.device, n: int = 10) -> list[str]:
    """Run ``fn`` once under the profiler; its ``n`` most expensive operators / kernels by self time
    on ``device`` (CUDA: device time; CPU: CPU time) as ``"name: total ms (calls)"``."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize(device)
    events = list(prof.key_averages())
    if cuda:
        # named self_device_time_total since torch 2.4 (self_cuda_time_total before)
        cost = [e.self_device_time_total for e in events]
    else:
        cost = [e.self_cpu_time_total for e in events]
    ranked = sorted(zip(cost, events), key=lambda pair: -pair[0])[:n]
    return [f"{e.key[:90]}: {c / 1e3:.2f} ms ({e.count} calls)" for c, e in ranked if c > 0]
