"""Argument helpers shared by the commands: the one place a device is chosen."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
import yaml

from fewshot_cam.config import check_device_name, layered, parse_overrides, read_yaml
from fewshot_cam.data.datasets import DATASETS
from fewshot_cam.data.options import OPTION_KEYS, read_options
from fewshot_cam.errors import UserError, check_rule
from fewshot_cam.io import atomic_write

T = TypeVar("T")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")


def pick_device(name: str) -> torch.device:
    """Resolve ``--device``; the library itself never picks one. UserError for a device this machine lacks."""
    name = check_device_name(name, "--device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device '{name}' requested but CUDA is not available")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device '{name}' requested but this machine has {count} CUDA device(s) "
                            f"(cuda:0 to cuda:{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device '{name}' requested but MPS is not available")
    return device


def check_flags(args: argparse.Namespace, rules: dict[str, tuple]) -> None:
    """Range-check parsed flags: ``dest: (low, high[, low_open[, high_open]])`` (None: unbounded; a flag
    left unset, None, is skipped). The error names the flag, e.g. ``--n-classes must be >= 1, got 0``."""
    for dest, rule in rules.items():
        value = getattr(args, dest, None)
        if value is not None:
            check_rule("--" + dest.replace("_", "-"), value, rule)


SEED = (0, 2**63 - 1)
IMAGE_SIZE = (8, 4096)
AT_LEAST_ONE = (1, None)


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--dataset D --root R``: where images come from."""
    parser.add_argument("--dataset", required=required, help=DATASETS.describe())
    parser.add_argument("--root", default=None, help="dataset root folder (not needed for synthetic)")


def add_data_options_argument(parser: argparse.ArgumentParser) -> None:
    """``--set data.KEY=VALUE`` (repeatable) for the read options of cub and filelist, in commands
    without a config file."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="data.KEY=VALUE",
                        help=f"read option of cub/filelist ({', '.join(OPTION_KEYS)}), e.g. --set data.crop=box")


def data_option_values(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``--set data.KEY=VALUE`` options given (checked), or None when none are."""
    nested = parse_overrides(args.overrides)
    if getattr(args, "config_data_options", None):
        nested["data"] = {**args.config_data_options, **(nested.get("data") or {})}
    other = sorted(set(nested) - {"data"})
    if other or not isinstance(nested.get("data", {}), dict):
        keys = "data." + ", data.".join(OPTION_KEYS)
        raise UserError(f"--set takes only data read options here ({keys}), got {other or nested}")
    values = nested.get("data")
    read_options(values)  # unknown keys and bad values raise here, naming the key
    return values or None


# flag dest -> dotted config key, for the flags every training command shares
RUN_FLAG_KEYS: dict[str, str] = {
    "dataset": "data.dataset",
    "root": "data.root",
    "image_size": "data.image_size",
    "epochs": "optim.epochs",
    "lr": "optim.lr",
    "out": "run.out",
    "device": "run.device",
    "seed": "run.seed",
}


def add_config_arguments(parser: argparse.ArgumentParser, config_help: str, set_example: str) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (applied last)."""
    parser.add_argument("--config", default=None, help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override any config key, e.g. --set {set_example} (repeatable; applied last)")


def add_run_arguments(parser: argparse.ArgumentParser, epochs_help: str, lr_help: str, out_help: str) -> None:
    """The training commands' ``--epochs --lr --out --seed --device --resume`` (unset unless given)."""
    parser.add_argument("--epochs", type=int, default=None, help=epochs_help)
    parser.add_argument("--lr", type=float, default=None, help=lr_help)
    parser.add_argument("--out", default=None, help=out_help)
    parser.add_argument("--seed", type=int, default=None)
    add_device_argument(parser)
    parser.set_defaults(device=None)  # unset unless given, so it does not override the file
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")


def flag_values(args: argparse.Namespace, keys: dict[str, str]) -> dict[str, Any]:
    """The explicitly given flags (not None) as a nested mapping; ``keys``: flag dest -> dotted key."""
    nested: dict[str, Any] = {}
    for dest, key in keys.items():
        if getattr(args, dest) is not None:
            *sections, name = key.split(".")
            node = nested
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = getattr(args, dest)
    return nested


def layered_settings(args: argparse.Namespace, keys: dict[str, str]) -> dict[str, Any]:
    """--config file < explicit flags < --set, as one nested mapping (:func:`fewshot_cam.config.layered`)."""
    return layered(args.config or None, flag_values(args, keys), args.overrides)


def run_distributed(device_name: str, train: Callable[[torch.device, Any], T]) -> tuple[T, Any]:
    """``train(device, info)`` inside this process's process group (under torchrun; a plain process is
    rank 0 of 1) on the device ``device_name`` resolves to -> (its result, the DistInfo)."""
    from fewshot_cam.training import distributed  # only the training commands pay for it

    info = distributed.from_env()
    device = distributed.local_device(pick_device(device_name), info)
    with distributed.process_group(info, device):
        return train(device, info), info


def best_val_summary(best: float, last_val: Any, val_every: int) -> str:
    """The end-of-run "best val accuracy" phrase of a training command."""
    if math.isinf(best):
        return "n/a (validation off)" if val_every <= 0 else "n/a (no validation yet)"
    return f"{best:.2f}%" + ("" if last_val is None else f", last {last_val} %")


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of a flag: stores into the new flag's dest (not in --help; kept so existing
    scripts work)."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        kwargs.pop("default", None)  # a parser.set_defaults for the dest must not become the alias's default
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)


def add_alias(parser: argparse.ArgumentParser, old: str, new: str, type: Callable | None = None) -> None:
    """Keep ``old`` working as a hidden, deprecated spelling of the flag ``new`` (same dest)."""
    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, type=type)


def add_settings_arguments(parser: argparse.ArgumentParser, set_example: str = "ways=5") -> None:
    """``--config FILE`` (YAML, keys named like the flags, e.g. ``image-batch: 64``; a ``data:`` section
    for read options) and repeatable ``--set KEY=VALUE`` (a flag name, or ``data.KEY`` for a read option
    of cub/filelist). Later wins: defaults < --config < explicit flags < --set. Resolved by
    :func:`resolve_settings` (the CLI's main calls it for every command that sets ``_settings``)."""
    parser.add_argument("--config", default=None, help="YAML file of settings named like the flags "
                        "(a data: section for read options); explicit flags and --set override it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"set a flag by name (e.g. --set {set_example}) or a read option of cub/filelist "
                             f"({', '.join('data.' + k for k in OPTION_KEYS)}); repeatable, applied last")
    parser.set_defaults(_settings=parser, config_data_options=None)


def _settable(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """flag name (dashes or underscores) -> its action, for --config / --set."""
    skip = {"help", "config", "overrides"}
    found = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in skip and not isinstance(action, DeprecatedAlias):
            found[action.dest] = found[action.dest.replace("_", "-")] = action
    return found


def _convert(action: argparse.Action, value: Any, key: str, where: str) -> Any:
    if isinstance(value, list) and not isinstance(action, argparse._AppendAction):
        value = ",".join(str(v) for v in value)  # e.g. methods: [protonet, logreg]
    if isinstance(action, argparse._AppendAction) and not isinstance(value, list):
        value = [value]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UserError(f"setting '{key}' must be true or false, got {value!r}", where)
        return value
    try:
        convert = action.type or (lambda v: v)
        return [convert(v) for v in value] if isinstance(value, list) else convert(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise UserError(f"setting '{key}' has a bad value {value!r}", where) from None


def resolve_settings(top: argparse.ArgumentParser, argv: list[str], args: argparse.Namespace) -> argparse.Namespace:
    """Apply ``--config`` (as defaults, so explicit flags win) and then ``--set`` to the command's flags."""
    parser: argparse.ArgumentParser = args._settings
    actions = _settable(parser)
    file = read_yaml(args.config) if args.config else {}
    if not isinstance(file, dict):
        raise UserError("a settings file must be a mapping of flag names to values", args.config)
    data = file.pop("data", None) if isinstance(file.get("data"), dict) else None
    unknown = sorted(k for k in file if k not in actions)
    if unknown:
        valid = ", ".join(sorted(a.option_strings[0].lstrip("-") for a in set(actions.values())))
        raise UserError(f"unknown setting '{unknown[0]}' (valid: {valid}, data)", args.config)
    parser.set_defaults(**{actions[k].dest: _convert(actions[k], v, k, args.config) for k, v in file.items()})
    args = top.parse_args(argv)
    args.config_data_options = data
    data_sets = []
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if key.strip().startswith("data."):
            data_sets.append(item)
        elif not sep or key.strip() not in actions:
            raise UserError(f"--set {item}: unknown setting '{key}' (a flag name or data.KEY)")
        else:
            action = actions[key.strip()]
            value = raw if action.type is not None else parse_overrides([f"v={raw}"])["v"]
            setattr(args, action.dest, _convert(action, value, key, "--set"))
    args.overrides = data_sets
    return args


def resolved_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The command's resolved flags (after --config and --set) as plain values, for the outputs."""
    skip = {"config", "overrides", "config_data_options"}
    out = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
           if not k.startswith("_") and k not in skip}
    if hasattr(args, "overrides"):
        out["data"] = data_option_values(args) or {}
    return out


def write_settings(path: str | Path, args: argparse.Namespace) -> Path:
    """The resolved settings as YAML at ``path`` (beside a folder of outputs, e.g. cam's PNGs)."""
    return atomic_write(path, yaml.safe_dump(resolved_settings(args), sort_keys=False))
