"""A run's two checkpoints, best.pt and last.pt, kept consistent through a kill at any point.

Per epoch, rank 0 writes, in this order (each file atomically, :func:`fewshot_cam.io.atomic_write`):

1. metrics.jsonl with the epoch's record;
2. best.pt, when validation improved (or validation is off);
3. last.pt, which records ``best_epoch`` and ``best_metric``: the epoch best.pt holds and its accuracy.

Nothing is written unless every parameter, buffer and optimiser state value is finite
(:func:`check_finite_state`), so a checkpoint never holds NaN or inf. A kill before 3 leaves last.pt
at the previous epoch; resuming from it drops the later metrics lines and trains the epoch again.
A kill between 2 and 3 leaves best.pt one epoch ahead of what last.pt says; :func:`repair_best`
(on resume) then keeps best.pt, the only copy of those weights, and corrects last.pt's summary to it.
Any other disagreement (a best.pt older than last.pt says, written by an earlier version that wrote
last.pt first, or a missing or damaged best.pt) is settled the same way: the summary follows best.pt;
except that a missing best.pt which last.pt says holds last.pt's own epoch is written again from last.pt.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fewshot_cam.errors import UserError
from fewshot_cam.models.checkpoint import load_checkpoint, save_checkpoint


def last_good(epoch: int) -> str:
    """What the run folder keeps when epoch ``epoch`` (1-based) fails before its checkpoint."""
    if epoch <= 1:
        return "no checkpoint was written"
    return f"the run folder keeps the last good checkpoint (epoch {epoch - 1})"


def _named_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[str, torch.Tensor]]:
    named = [(f"model {k}", t) for k, t in model.state_dict().items() if t.is_floating_point()]
    for index, values in optimizer.state_dict()["state"].items():
        named += [(f"optimizer state {index}.{k}", v) for k, v in values.items()
                  if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return named


def check_finite_state(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    """UserError naming the first non-finite tensor of the model or the optimiser state (one device sync)."""
    named = _named_state(model, optimizer)
    if not named:
        return
    device = named[0][1].device
    flags = torch.stack([torch.isfinite(t).all().to(device) for _, t in named])
    if bool(flags.all()):
        return
    name = named[int((~flags).nonzero()[0, 0])][0]
    raise UserError(f"non-finite values in {name} after epoch {epoch}; stopped before writing a checkpoint, "
                    f"{last_good(epoch)}; lower optim.lr or check the data")


def write_checkpoints(run_dir: Any, payload: dict[str, Any], improved: bool) -> None:
    """best.pt (when ``improved``), then last.pt: see the module docstring for why in this order."""
    if improved:
        save_checkpoint(run_dir.best, payload)
    save_checkpoint(run_dir.last, payload)


def _warn(path: Path, message: str) -> None:
    print(f"fewshot-cam: warning: {path}: {message}", file=sys.stderr)


def _best_of(path: Path) -> tuple[int, float | None] | None:
    """(epoch, best_metric) held by best.pt; None when it is missing or unreadable (with a warning)."""
    if not path.exists():
        return None
    try:
        ckpt = load_checkpoint(path)
    except UserError as err:
        _warn(path, f"unreadable, ignored ({err})")
        return None
    return int(ckpt.get("epoch", -1)), ckpt.get("best_metric")


def repair_best(last: dict[str, Any], best_path: Path) -> str | None:
    """Make ``last``'s ``best_epoch`` / ``best_metric`` describe what ``best_path`` holds.

    ``last`` is the loaded last.pt (updated in place). An old last.pt without ``best_epoch`` agrees when
    its ``best_metric`` equals best.pt's. Returns None when nothing changed, "last" when ``last`` was
    corrected (write it back), "best" when best.pt is to be written again from ``last``.
    """
    claimed = (last.get("best_epoch"), last.get("best_metric"))
    held = _best_of(best_path)
    if held is None and claimed[0] is not None and claimed[0] == last.get("epoch"):
        _warn(best_path, f"missing or damaged; written again from last.pt, which holds its epoch {claimed[0]}")
        return "best"
    found = (None, None) if held is None else held
    agrees = found[1] == claimed[1] and (claimed[0] is None or claimed[0] == found[0])
    if agrees:
        last["best_epoch"] = found[0]
        return None
    said = "no best" if claimed[1] is None and claimed[0] is None else f"best epoch {claimed[0]} ({claimed[1]})"
    holds = "nothing" if held is None else f"epoch {found[0]} ({found[1]})"
    _warn(best_path, f"last.pt says {said} but best.pt holds {holds} (a run killed between the two writes); "
                     "the run's best now follows best.pt")
    last["best_epoch"], last["best_metric"] = found
    return "last"


def drop_orphan_best(best_path: Path) -> None:
    """A fresh run's folder may hold a best.pt without last.pt (a run killed between the two writes of
    its first epoch): it belongs to no run that can be resumed, so it goes (with a warning)."""
    if best_path.exists():
        _warn(best_path, "removed: left by a run killed before its first last.pt; this run starts afresh")
        best_path.unlink()


def best_value(metric: float | None) -> float:
    """A checkpoint's ``best_metric`` as the run's ``best`` (-inf for none)."""
    return -math.inf if metric is None else float(metric)
