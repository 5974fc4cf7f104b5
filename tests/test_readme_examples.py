"""README's "Use from Python" examples run as written (tiny sizes), each in a fresh namespace."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

README = Path(__file__).parent.parent / "README.md"


def examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Use from Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_four_examples():
    assert len(examples()) == 4


@pytest.fixture
def image_folder(tmp_path, monkeypatch):
    """images/train/<class>/<i>.png: 6 classes of 5 random 16x16 pictures, in the working folder."""
    rng = np.random.default_rng(0)
    for c in range(6):
        folder = tmp_path / "images" / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(index: int) -> dict:
    namespace: dict = {"__name__": f"readme_example_{index}"}
    torch.manual_seed(0)
    exec(compile(examples()[index], f"README.md example {index}", "exec"), namespace)
    return namespace


def test_camloss_in_a_plain_loop_trains_the_resnet():
    ns = run(0)
    assert torch.isfinite(ns["loss"]) and ns["features"].shape == (8, 512, 2, 2)
    assert ns["model"].fc.weight.grad is not None


def test_episode_sampler_feeds_a_dataloader(image_folder):
    ns = run(1)
    labels = torch.tensor(ns["train"].targets)
    batches = [index for index in ns["sampler"]]
    assert len(batches) == 10 and ns["support"].shape == (5, 1, 3, 16, 16) and ns["query"].shape == (5, 3, 3, 16, 16)
    for index in batches:
        rows = labels[index].view(5, 4)
        assert (rows == rows[:, :1]).all() and len(set(rows[:, 0].tolist())) == 5


def test_batched_evaluation_of_precomputed_features(capsys):
    ns = run(2)
    out = capsys.readouterr().out
    assert "protonet" in out and "logreg" in out and "+-" in out
    assert all(len(a) == 200 for a in ns["accuracy"].values())
    assert all(20.0 - 8 < a.mean() < 20.0 + 8 for a in ns["accuracy"].values())  # random features: chance, 5-way


def test_cam_of_a_foreign_model_and_the_hook_is_removed():
    ns = run(3)
    assert ns["cams"].shape == (2, 2, 2) and ns["maps"].shape == (2, 64, 64)
    assert float(ns["maps"].min()) >= 0.0 and float(ns["maps"].max()) <= 1.0
    assert not ns["model"].layer4._forward_hooks
