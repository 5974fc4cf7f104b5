"""Frozen-dataclass configuration: YAML fills it, ``--set a.b=v`` overrides last.

Each stage declares its own frozen dataclass (a docstring per field). This module only knows how to
fill one from a mapping, coercing every value by the field's declared type, so that PyYAML's
``1e-3`` (read as a string) becomes a float, and an unknown key or a wrongly typed value raises
:class:`~fewshot_cam.errors.UserError` naming the key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write

T = TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "", path: str | Path | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields take nested mappings.

    ``where`` is the dotted key prefix used in error messages; ``path`` the file the data came from.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise UserError(f"config section '{where or '<root>'}' must be a mapping, got {data!r}", path)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise UserError(f"unknown config key '{key}' (valid keys here: {', '.join(sorted(fields))})", path)
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        default = _field_default(fields[name])
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            # A partly given section keeps the containing field's own default values, not its type's.
            value = merge(to_dict(default), value)
        kwargs[name] = _coerce(hints[name], value, key, path)
    return cls(**kwargs)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _coerce(tp: Any, value: Any, key: str, path: str | Path | None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key, path)
            except UserError:
                pass
        raise UserError(f"config key '{key}': {value!r} does not fit {tp}", path)
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"config key '{key}': {value!r} is not one of {list(args)}", path)
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}': expected a list, got {value!r}", path)
        item = args[0] if args else Any
        return tuple(_coerce(item, v, key, path) for v in value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UserError(f"config key '{key}': expected true or false, got {value!r}", path)
    if tp in (int, float):
        return _coerce_number(tp, value, key, path)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"config key '{key}': expected a string, got {value!r}", path)
        return str(value)
    return value


def _coerce_number(tp: type, value: Any, key: str, path: str | Path | None) -> int | float:
    """int or float from a number or a string ('1e-3', which PyYAML leaves a string); bools are refused."""
    bad = UserError(f"config key '{key}': expected {tp.__name__}, got {value!r}", path)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad
    try:
        if tp is float:
            return float(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise bad
            return int(value)
        return int(value)
    except ValueError:
        raise bad from None


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["optim.lr=0.1", "model.backbone=conv4"]`` into a nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, raising UserError for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found" if not path.exists() else "config path is not a file", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read the config file ({err.strerror})", path) from None
    except UnicodeDecodeError as err:
        raise UserError(f"config file is not UTF-8 text (byte {err.start}: {err.object[err.start:err.start + 1]!r})",
                        path) from None
    except yaml.YAMLError as err:
        raise UserError(f"not valid YAML ({str(err).splitlines()[0]})", path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("config file must hold a mapping at the top level", path)
    return data


def layered(
    path: str | Path | None = None, flags: Mapping[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """The one layering of settings, later wins: the YAML file < explicit flags (a nested mapping) <
    ``--set`` overrides. Defaults come from the dataclass :func:`from_dict` fills."""
    data = read_yaml(path) if path is not None else {}
    return merge(merge(data, flags or {}), parse_overrides(list(overrides)))


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    flags: Mapping[str, Any] | None = None,
) -> T:
    """``cls`` from :func:`layered` settings (file < flags < overrides)."""
    return from_dict(cls, layered(path, flags, overrides), path=path)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a (nested) config dataclass; tuples become lists."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(cfg))


DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE = re.compile(r"(cpu|cuda|mps)(:\d+)?")


def check_device_name(name: Any, key: str = "device") -> str:
    """``name`` if it is "auto" or a device of :data:`DEVICE_TYPES` ("cuda:1"), else UserError naming ``key``.

    Only the spelling is checked here; whether this machine has the device is the CLI's ``pick_device``."""
    if isinstance(name, str) and (name == "auto" or _DEVICE.fullmatch(name)):
        return name
    raise UserError(f"{key}: unknown device {name!r} (valid: auto, {', '.join(DEVICE_TYPES)}, cuda:N)")


def dump_yaml(cfg: Any, path: str | Path) -> None:
    """Write the resolved config beside an output (atomically)."""
    atomic_write(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
