"""Stage b, compiled: the throughput of :mod:`.throughput` with the backbone ``torch.compile``'d
(``run.compile``), at one batch size (another would recompile). Compilation is the first steps' time;
when it exceeds ``compile_limit_s`` (90 s) the measurement is skipped and the stage says so.
"""

from __future__ import annotations

from fewshot_cam.bench.context import Context
from fewshot_cam.bench.throughput import Trainer, matmul_peak, measure, step_flops, warm_up


def run(ctx: Context) -> None:
    s = ctx.sizes
    peak = ctx.put("bf16_matmul_peak_tflops", round(matmul_peak(ctx, s.peak_n), 1))
    ctx.put("backend", s.compile_backend)
    flops = step_flops(Trainer(ctx, s.compile_batch_size))  # eagerly: the counter does not trace compiled code
    trainer = Trainer(ctx, s.compile_batch_size, compile_backend=s.compile_backend)
    compile_s = ctx.put("compile_s", round(warm_up(trainer, steps=1), 1))
    if compile_s >= s.compile_limit_s:
        ctx.put("measured", f"no: compiling took {compile_s:.0f} s >= {s.compile_limit_s:.0f} s")
        return
    warm_up(trainer, steps=2)
    ctx.put(f"compiled_batch_{s.compile_batch_size}", measure(trainer, peak, flops))
