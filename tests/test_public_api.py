"""The public API: every subpackage's __all__ names real objects, and the registries list what the CLI offers."""

from __future__ import annotations

import importlib

import pytest

from fewshot_cam.cli import build_parser

PACKAGES = ["data", "fewshot", "models", "losses", "training", "evaluation", "analysis"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist(name):
    module = importlib.import_module(f"fewshot_cam.{name}")
    assert module.__all__ and all(hasattr(module, n) for n in module.__all__), name


def choices(argv: list[str], dest: str) -> list[str]:
    sub = build_parser(argv)._subparsers._group_actions[0].choices[argv[0]]
    return list(next(a for a in sub._actions if a.dest == dest).choices)


def test_cli_choices_come_from_the_registries():
    from fewshot_cam.analysis import FILLS, METHODS
    from fewshot_cam.models import BACKBONES, HEADS
    from fewshot_cam.training.metatrain import SAMPLERS

    assert choices(["pretrain"], "backbone") == BACKBONES.names()
    assert choices(["pretrain"], "head") == HEADS.names()
    assert choices(["cam"], "method") == METHODS.names()
    assert choices(["ablate"], "fill") == FILLS.names()
    assert choices(["metatrain"], "sampler") == SAMPLERS.names()
