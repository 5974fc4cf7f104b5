"""What the machine has: versions, the device, and which packages the check needs are missing.

Runs in the orchestrating process before any stage, importing nothing of the package beyond the
standard library (and torch, once every required package is there), so a missing package is
reported rather than crashing the check. Whether the stages' imports pull in learn2learn is asked of
the fork server that has imported them all (:mod:`.runner`; it must not: the adapter is lazy).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys

REQUIRED = {
    "torch": "everything", "numpy": "everything", "PIL": "image decoding (Pillow)", "yaml": "configs (PyYAML)",
    "scipy": "confidence intervals, localisation", "tqdm": "progress bars", "matplotlib": "synthetic colours, plots",
    "torchvision": "the ablation's blur fill",
}
OPTIONAL = {"pytest": "stage tests (else the built-in runner)", "learn2learn": "not used by the check",
            "sklearn": "not used by the check"}
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn"}


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


def device_info() -> dict:
    """The accelerator as torch sees it (this initialises CUDA in the orchestrator only)."""
    import torch

    info: dict = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info |= {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "cudnn": torch.backends.cudnn.version(),
            "nccl": nccl_version(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
    return info


def nccl_version() -> str:
    """torch's NCCL version ("2.27.3"), or why there is none."""
    import torch

    if not torch.distributed.is_available() or not torch.distributed.is_nccl_available():
        return "not available"
    version = torch.cuda.nccl.version()  # a tuple (major, minor, patch[, suffix]); an int in old releases
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def describe() -> dict:
    """The report's ``environment`` section."""
    info = {"python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
            "cpus": os.cpu_count(), **packages()}
    if not info["missing_required"]:
        info["device"] = device_info()
    return info
