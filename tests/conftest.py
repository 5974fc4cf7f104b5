"""Fixtures shared by the whole suite (keep this small and generic)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def decoded_cache_dir(tmp_path_factory):
    """Every test writes the decoded-split cache under a temporary folder, never ~/.cache."""
    path = tmp_path_factory.mktemp("fewshot-cam-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEWSHOT_CAM_CACHE", str(path))
        yield path


@pytest.fixture
def cli(capsys):
    """``cli("data", "info", ...) -> (exit code, stdout, stderr)`` through ``fewshot_cam.cli.main``."""
    from fewshot_cam.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def interrupt_pretrain(monkeypatch):
    """``interrupt_pretrain(epoch)``: pretraining raises KeyboardInterrupt (exit 130) when it starts
    ``epoch`` (1-based); ``interrupt_pretrain(None)`` trains normally again."""
    from fewshot_cam.training import pretrain

    real = pretrain.train_one_epoch

    def patch(epoch: int | None) -> None:
        def interrupted(state, objective, at, autocast):
            if at == epoch:
                raise KeyboardInterrupt
            return real(state, objective, at, autocast)

        monkeypatch.setattr(pretrain, "train_one_epoch", real if epoch is None else interrupted)

    return patch
