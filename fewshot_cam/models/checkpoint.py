"""Checkpoint files: one ``torch.save``d dict of plain containers and tensors, written atomically.

Payload keys (``FORMAT`` = "fewshot-cam/1"): ``format``, ``model`` (state_dict), ``model_config``
(dict of :class:`ModelConfig`), ``config`` (the full resolved config dict), ``class_names`` (list),
``num_classes``, ``epoch``, ``optimizer``, ``scheduler``, ``best_metric``. Only ``format``, ``model``,
``model_config`` and ``num_classes`` are required to rebuild the model. Files are read with
``torch.load(weights_only=True)``, so ``save_checkpoint`` turns paths and numpy values into plain ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_cam.config import from_dict, read_yaml
from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.models.factory import ModelConfig, build_model

FORMAT = "fewshot-cam/1"
REQUIRED = ("model", "model_config", "num_classes")
SELECTIONS = {"best-val": "best.pt", "last": "last.pt"}
"""``train.select`` -> the run folder's file that is the final model."""


def final_checkpoint(run_folder: str | Path) -> Path:
    """The final model of a run folder: last.pt when its config.yaml says ``train.select: last``, else best.pt."""
    run_folder = Path(run_folder)
    config = run_folder / "config.yaml"
    settings = read_yaml(config) if config.is_file() else {}
    select = (settings.get("train") or {}).get("select", "best-val")
    if select not in SELECTIONS:
        raise UserError(f"unknown train.select '{select}' (valid: {', '.join(SELECTIONS)})", config)
    return run_folder / SELECTIONS[select]


def _plain(value: Any, key: str = "payload") -> Any:
    """Recursively turn ``value`` into containers ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, np.generic):  # before float: np.float64 subclasses it but does not load
        return value.item()
    if isinstance(value, (torch.Tensor, str, int, float, bool, type(None), torch.Size)):
        return value
    if isinstance(value, dict):
        return type(value)((k, _plain(v, f"{key}.{k}")) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"checkpoint value {key} of type {type(value).__name__} is not a plain container")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (``format`` added if missing) to ``path`` atomically.

    Through :func:`fewshot_cam.io.atomic_write`: a crash leaves either the old file or the new one.
    """
    payload = _plain({"format": FORMAT, **payload})
    atomic_write(path, lambda f: torch.save(payload, f))


def _unwrapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the key prefixes DistributedDataParallel ("module.") and torch.compile ("_orig_mod.") add."""
    out = {}
    for key, value in state.items():
        while key.startswith(("module.", "_orig_mod.")):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _legacy_saol(model_config: dict, state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """A checkpoint saved before SAOL followed the paper (head "saol" with a pyramid decoder,
    ``head.reduce.*``) is the variant now named "saol-rawlogit-psp"; its decoder keys moved under
    ``head.decoder.``. Other checkpoints pass unchanged."""
    if model_config.get("head") != "saol" or not any(k.startswith("head.reduce.") for k in state):
        return model_config, state
    moved = {}
    for key, value in state.items():
        for old in ("head.reduce.", "head.fuse."):
            if key.startswith(old):
                key = "head.decoder." + key[len("head."):]
        moved[key] = value
    return {**model_config, "head": "saol-rawlogit-psp"}, moved


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a run folder means its :func:`final_checkpoint`.

    Raises UserError for a missing file, a damaged or truncated one, or a file without ``format``.
    """
    path = Path(path)
    if path.is_dir():
        path = final_checkpoint(path)
    if not path.is_file():
        raise UserError("checkpoint not found", path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any failure to unpickle a data file (KeyError, IndexError, ... included) is damage
        first = f"{type(err).__name__}: {str(err).strip().splitlines()[0]}" if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint is damaged or not a PyTorch file ({first[:200]})", path) from None
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise UserError("not a fewshot-cam checkpoint (no 'format' key)", path)
    if ckpt["format"] != FORMAT:
        raise UserError(f"unsupported checkpoint format '{ckpt['format']}' (this version reads {FORMAT})", path)
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise UserError(f"checkpoint lacks key '{missing[0]}'", path)
    return ckpt


def load_model(
    path: str | Path, backbone: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[FewShotClassifier, dict[str, Any]]:
    """Rebuild the model saved in ``path``, load its weights, move it to ``map_location``, eval mode.

    ``backbone``, when given, must match the checkpoint's; a mismatch, or weights that do not fit
    the rebuilt model, raise UserError naming both backbones and the path.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    model_config, state = _legacy_saol(dict(ckpt["model_config"]), _unwrapped(ckpt["model"]))
    cfg = from_dict(ModelConfig, model_config, where="model_config", path=path)
    if backbone is not None and backbone != cfg.backbone:
        raise UserError(f"checkpoint holds backbone '{cfg.backbone}', not the requested '{backbone}'", path)
    model = build_model(cfg, int(ckpt["num_classes"]), load_weights=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise UserError(
            f"weights do not fit backbone '{cfg.backbone}' with {ckpt['num_classes']} classes "
            f"(requested: {backbone or 'as saved'}): {detail}",
            path,
        ) from None
    return model.to(map_location).eval(), ckpt
