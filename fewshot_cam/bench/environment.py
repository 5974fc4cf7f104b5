"""What the machine has: versions, the device, and which packages the check needs are missing.

Runs in the orchestrating process before any stage, importing nothing of the package beyond the
standard library, so a missing package is reported rather than crashing the check. Whether the
check's own import path pulls in learn2learn is probed in a fresh interpreter (it must not: the
adapter imports it lazily).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys

REQUIRED = {
    "torch": "everything", "numpy": "everything", "PIL": "image decoding (Pillow)", "yaml": "configs (PyYAML)",
    "scipy": "confidence intervals, localisation", "tqdm": "progress bars", "matplotlib": "synthetic colours, plots",
}
OPTIONAL = {"pytest": "stage tests (else the built-in runner)", "torchvision": "not used by the check",
            "learn2learn": "not used by the check", "sklearn": "not used by the check"}
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn"}

# Everything a stage imports (the CLI commands it calls too), in a fresh interpreter: is learn2learn among it?
PROBE = (
    "import importlib, sys\n"
    "from fewshot_cam.bench.stages import STAGES\n"
    "for m in [s.module for _, s in STAGES.items()] + ['fewshot_cam.cli.' + c for c in ('pretrain', 'eval', 'cam', 'ablate')]:\n"
    "    importlib.import_module(m)\n"
    "print('learn2learn' in sys.modules)"
)


def version(module: str) -> str | None:
    """The installed version of ``module``'s distribution, or None when it cannot be imported."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(DISTRIBUTIONS.get(module, module))
    except importlib.metadata.PackageNotFoundError:
        return "present"


def packages() -> dict:
    found = {m: version(m) for m in (*REQUIRED, *OPTIONAL)}
    return {
        "versions": {m: v for m, v in found.items() if v is not None},
        "missing_required": [f"{m} ({REQUIRED[m]})" for m in REQUIRED if found[m] is None],
        "missing_optional": [f"{m} ({OPTIONAL[m]})" for m in OPTIONAL if found[m] is None],
    }


def learn2learn_imported(env: dict[str, str]) -> str:
    """'no' when importing every module the stages use leaves learn2learn unimported, else why not."""
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        return "import failed: " + " ".join(proc.stderr.strip().splitlines()[-1:])
    return "yes (a bug: the check must run without it)" if proc.stdout.strip().endswith("True") else "no"


def device_info() -> dict:
    """The accelerator as torch sees it (this initialises CUDA in the orchestrator only)."""
    import torch

    info: dict = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info |= {"name": props.name, "count": torch.cuda.device_count(), "memory_gib": round(props.total_memory / 2**30, 1),
                 "capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count,
                 "cudnn": torch.backends.cudnn.version(), "nccl": ".".join(map(str, torch.cuda.nccl.version())),
                 "bf16_supported": torch.cuda.is_bf16_supported()}
    return info


def describe(env: dict[str, str]) -> dict:
    """The report's ``environment`` section."""
    info = {"python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
            "cpus": os.cpu_count(), **packages()}
    if not info["missing_required"]:
        info["device"] = device_info()
        info["learn2learn_imported"] = learn2learn_imported(env)
    return info
