"""The config machinery: coercion by field type, unknown keys, overrides, nested defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fewshot_cam.config import from_dict, load_config, parse_overrides, to_dict
from fewshot_cam.errors import UserError


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    epochs: int = 10
    schedule: str = "cosine"


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flags: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=lambda: Inner(lr=0.001, schedule="constant"))


def test_yaml_exponent_string_becomes_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  lr: 1e-3\n")  # PyYAML reads 1e-3 as the string '1e-3'
    cfg = load_config(Outer, path)
    assert cfg.inner.lr == 0.001 and isinstance(cfg.inner.lr, float)


def test_partial_section_keeps_the_fields_own_default():
    cfg = from_dict(Outer, {"inner": {"epochs": 2}})
    assert cfg.inner == Inner(lr=0.001, epochs=2, schedule="constant")


def test_unknown_key_and_wrong_type_name_the_key(tmp_path):
    with pytest.raises(UserError, match="inner.lrr"):
        from_dict(Outer, {"inner": {"lrr": 1}})
    with pytest.raises(UserError, match="inner.epochs"):
        from_dict(Outer, {"inner": {"epochs": "many"}})


def test_overrides_win_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\ninner:\n  epochs: 3\n")
    cfg = load_config(Outer, path, ["inner.epochs=7", "flags=[3,4]"])
    assert (cfg.name, cfg.inner.epochs, cfg.flags) == ("a", 7, (3, 4))
    assert from_dict(Outer, to_dict(cfg)) == cfg
    assert parse_overrides(["a.b.c=1.0e-2"]) == {"a": {"b": {"c": 0.01}}}
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["oops"])
