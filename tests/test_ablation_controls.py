"""Planted truth, both ways: the default ``fewshot-cam ablate`` must recognise a background learner and
a foreground learner for what they are.

Two tiny models are trained for a few epochs at 16 px on variants of the built-in benchmark:

- background learner: every object is drawn at random (it carries no class information) and every
  class sits on its own background family, in train and in the novel (test) split alike;
- foreground learner: train backgrounds are random (``shortcut_rate`` 0), and so are test's.

The data are written as an image folder with masks and the models ablated through the CLI with its
defaults only (fill, dilation, conditions, modified images), so a change to any default that breaks a
control fails here. The margins are wide for 100 episodes (5-way 1-shot, 5 queries: a 95% CI of about
+-3 points) and the models' original accuracies (about 65-75%); ``test_leaky_fills_are_caught`` shows
the assertions have the power to fail: with the old per-image-mean fill the background learner keeps
far more than chance on foreground-only images.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F

from fewshot_cam.data.synthetic import SynthConfig, generate_split, write_synthetic
from fewshot_cam.data.transforms import to_float
from fewshot_cam.models.checkpoint import save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model

SIZE, WAYS = 16, 5
CHANCE = 100.0 / WAYS
BASE = SynthConfig(image_size=SIZE, images_per_class=40, classes=(20, 4, 10), n_backgrounds=20)
CONTROLS = {
    "bg": replace(BASE, shortcut_rate=1.0, objects="random", novel_backgrounds="class"),
    "fg": replace(BASE, shortcut_rate=0.0),
}


def train_tiny(cfg: SynthConfig, epochs: int = 12, seed: int = 0) -> torch.nn.Module:
    """The tiny backbone, Adam, cross-entropy on the train split: a few seconds on one core."""
    train = generate_split("train", cfg)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(backbone="tiny"), num_classes=train.num_classes)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=order).split(64):
            loss = F.cross_entropy(model(to_float(images[batch])), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def control_checkpoints(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("controls")
    out = {}
    for kind, cfg in CONTROLS.items():
        write_synthetic(tmp / kind, cfg)
        model = train_tiny(cfg)
        data = {"dataset": "imagefolder", "root": str(tmp / kind), "image_size": SIZE}
        save_checkpoint(
            tmp / f"{kind}.pt",
            {
                "model": model.state_dict(),
                "model_config": asdict(ModelConfig(backbone="tiny")),
                "num_classes": cfg.classes[0],
                "config": {"data": data},
            },
        )
        out[kind] = tmp / f"{kind}.pt"
    return out


def ablate(cli, checkpoint, tmp_path, *extra) -> dict:
    """The default analysis of one checkpoint on 100 seeded test episodes: its record, per condition mean %."""
    out = tmp_path / f"{checkpoint.stem}.json"
    code, _, err = cli("ablate", "--checkpoint", checkpoint, "--ways", WAYS, "--shots", 1, "--queries", 5,
                       "--episodes", 100, "--seed", 0, "--device", "cpu", "--json", out, *extra)
    assert code == 0, err
    model = next(iter(json.loads(out.read_text())["models"].values()))
    acc = {c: entries[0]["mean"] for c, entries in model["conditions"].items()}
    if "mixed-rand" not in acc:
        return {"acc": acc}
    return {"acc": acc, "following": model["background_following"]["protonet"]["mean"],
            "gap": model["bg_gap"]["protonet"]["mean"], "bri": model["reliance"]["protonet"]["value"]}


@pytest.fixture(scope="session")
def default_results(control_checkpoints, tmp_path_factory) -> dict:
    from fewshot_cam.cli import main

    def cli(*argv):
        return main([str(a) for a in argv]), "", ""

    tmp = tmp_path_factory.mktemp("control-ablations")
    return {kind: ablate(cli, path, tmp) for kind, path in control_checkpoints.items()}


def test_background_learner_is_found(default_results):
    r = default_results["bg"]
    acc = r["acc"]
    assert acc["original"] > CHANCE + 30  # it learned something
    assert abs(acc["background"] - acc["original"]) < 12 and abs(acc["bg-tiled"] - acc["original"]) < 12
    assert acc["foreground"] < CHANCE + 8  # nothing of the background survives the fill
    assert r["following"] > acc["original"] - 15 and r["following"] > 2.5 * CHANCE
    assert acc["mixed-rand"] < CHANCE and r["gap"] > 30
    assert r["bri"] > 0.8


def test_foreground_learner_is_found(default_results):
    r = default_results["fg"]
    acc = r["acc"]
    assert acc["original"] > CHANCE + 30
    assert acc["foreground"] > acc["original"] - 8 and acc["mixed-rand"] > acc["original"] - 10
    assert acc["background"] < CHANCE + 8 and acc["bg-tiled"] < CHANCE + 8  # nothing of the object survives
    assert r["following"] < CHANCE + 5 and abs(r["gap"]) < 8
    assert r["bri"] < 0.2


def test_leaky_fills_are_caught(cli, control_checkpoints, tmp_path):
    """The assertion above that fails when the fill leaks: the background learner's foreground-only
    accuracy, with the per-image mean colour and with the blur."""
    for fill in ("image-mean", "blur"):
        r = ablate(cli, control_checkpoints["bg"], tmp_path, "--fill", fill, "--conditions", "foreground")
        assert r["acc"]["foreground"] > CHANCE + 8, fill
