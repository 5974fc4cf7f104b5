"""The package as a user installs it: build the wheel, install it into a fresh virtual environment (its
dependencies made visible through a .pth file, not the checkout), and run the commands from a folder
outside the checkout. The shipped episode files must be found as package data."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from fewshot_cam.models.checkpoint import save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model

REPO = Path(__file__).resolve().parent.parent
DEPENDENCIES = ("torch", "torchvision", "numpy", "scipy", "yaml", "tqdm", "matplotlib", "PIL")

pytestmark = pytest.mark.slow  # ~40 s on 2 CPU cores; part of the default run


def run(*argv, cwd, env) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def dependency_dirs() -> list[str]:
    """The site-packages folders the dependencies are imported from (never the checkout)."""
    import importlib

    return sorted({str(Path(importlib.import_module(m).__file__).resolve().parent.parent) for m in DEPENDENCIES})


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", REPO, "-w", tmp / "dist",
        cwd=tmp, env=os.environ)
    wheel = next((tmp / "dist").glob("fewshot_cam-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp,
                    env=os.environ).strip())
    (site / "_deps.pth").write_text("\n".join(dependency_dirs()) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel,
        cwd=tmp, env=os.environ)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {"OMP_NUM_THREADS": "1"}
    work = tmp / "work"
    work.mkdir()
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny")
    data = {"dataset": "synthetic", "image_size": 16}
    save_checkpoint(work / "tiny.pt", {"model": build_model(cfg, 64).state_dict(), "model_config": asdict(cfg),
                                       "num_classes": 64, "config": {"data": data}})
    return env_dir, work, env


def test_the_installed_wheel_finds_its_shipped_episodes_and_every_command_works(installed):
    env_dir, work, env = installed
    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "fewshot-cam"
    where = run(python, "-c", "import fewshot_cam, fewshot_cam.data.episode_file as e; print(fewshot_cam.__file__); "
                "print(e.SHIPPED_DIR)", cwd=work, env=env).split()
    assert all(Path(p).is_relative_to(env_dir) for p in where), where  # the wheel's copy, not the checkout
    shipped = Path(where[1]) / "synthetic-test-5way-1shot-15q.json"
    assert shipped.is_file()
    assert "ways: 5" in run(cli, "episodes", "info", shipped, cwd=work, env=env)
    assert "train" in run(cli, "data", "info", "--dataset", "synthetic", "--image-size", "16", cwd=work, env=env)
    out = run(cli, "eval", "--checkpoint", "tiny.pt", "--ways", "5", "--shots", "1", "--methods", "protonet",
              "--device", "cpu", cwd=work, env=env)
    assert f"2000 episodes from episode file {shipped}" in out and "protonet" in out
    out = run(cli, "cam", "--checkpoint", "tiny.pt", "--images", "4", "--pictures", "4", "--out", "cams",
              "--device", "cpu", cwd=work, env=env)
    assert (work / "cams" / "localization.json").is_file() and "localisation" in out
    out = run(cli, "ablate", "--checkpoint", "tiny.pt", "--ways", "5", "--shots", "1", "--episodes", "20",
              "--device", "cpu", cwd=work, env=env)
    assert "background" in out.lower() and "foreground" in out.lower()
