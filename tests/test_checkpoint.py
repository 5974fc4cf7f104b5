"""Checkpoint round trip, atomic writes under a simulated crash, and the errors users see."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import fewshot_cam.io
from fewshot_cam.config import to_dict
from fewshot_cam.errors import UserError
from fewshot_cam.models import checkpoint
from fewshot_cam.models.checkpoint import FORMAT, load_checkpoint, load_model, save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny")
    model = build_model(cfg, num_classes=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    payload = {
        "model": model.state_dict(),
        "model_config": to_dict(cfg),
        "config": {"data": {"root": Path("/data/x")}, "lr": 0.1},
        "class_names": ["a", "b", "c"],
        "num_classes": 3,
        "epoch": 4,
        "optimizer": opt.state_dict(),
        "scheduler": None,
        "best_metric": np.float64(61.5),
    }
    path = tmp_path_factory.mktemp("ckpt") / "runs" / "last.pt"
    save_checkpoint(path, payload)
    return path, model.eval()


def test_round_trip(saved):
    path, model = saved
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == FORMAT and ckpt["epoch"] == 4 and ckpt["class_names"] == ["a", "b", "c"]
    assert ckpt["best_metric"] == 61.5 and ckpt["config"]["data"]["root"] == "/data/x"
    restored, _ = load_model(path, backbone="tiny")
    assert not restored.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


def test_wrapped_state_dict_keys_load(saved, tmp_path):
    """Weights saved from a DDP- or torch.compile-wrapped model load into the plain one."""
    path, model = saved
    ckpt = load_checkpoint(path)
    ckpt["model"] = {f"_orig_mod.module.{k}": v for k, v in ckpt["model"].items()}
    wrapped = tmp_path / "wrapped.pt"
    save_checkpoint(wrapped, ckpt)
    restored, _ = load_model(wrapped)
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


def test_mismatched_backbone_names_both_and_the_path(saved):
    path, _ = saved
    with pytest.raises(UserError, match=f"{path}.*'tiny'.*'resnet12'"):
        load_model(path, backbone="resnet12")


def test_weights_that_do_not_fit(saved, tmp_path):
    path, _ = saved
    ckpt = load_checkpoint(path)
    ckpt["model_config"]["backbone"] = "conv4"
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, ckpt)
    with pytest.raises(UserError, match=f"{bad}.*'conv4'.*requested: as saved"):
        load_model(bad)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign", "missing"])
def test_damaged_files_raise_user_errors(saved, tmp_path, damage):
    path, _ = saved
    target = tmp_path / "x.pt"
    data = path.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        target.write_bytes(b"not a checkpoint at all")
    elif damage == "foreign":
        torch.save({"state_dict": {}}, target)
    expected = {"foreign": "no 'format'", "missing": "not found"}.get(damage, "damaged")
    with pytest.raises(UserError, match=expected) as info:
        load_checkpoint(target)
    assert str(target) in str(info.value)


@pytest.mark.parametrize("crash_in", ["torch.save", "os.replace"])
def test_crash_mid_write_keeps_the_old_file(saved, tmp_path, monkeypatch, crash_in):
    path, _ = saved
    target = tmp_path / "best.pt"
    target.write_bytes(path.read_bytes())
    before = target.read_bytes()

    def boom(*args, **kwargs):
        if crash_in == "torch.save":
            args[1].write(b"half a checkpoint")
        raise OSError("disk full")

    if crash_in == "torch.save":
        monkeypatch.setattr(checkpoint.torch, "save", boom)
    else:
        monkeypatch.setattr(fewshot_cam.io.os, "replace", boom)
    with pytest.raises(UserError, match="best.pt: cannot write here: disk full"):
        save_checkpoint(target, {"model": {}, "model_config": {}, "num_classes": 1})
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["best.pt"]


def test_unplain_payload_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="payload.config.fn"):
        save_checkpoint(tmp_path / "c.pt", {"config": {"fn": object()}})
    assert not list(tmp_path.iterdir())
