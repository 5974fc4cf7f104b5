"""``train.select``: a run folder given as --checkpoint means best.pt or, as RFS, last.pt."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from fewshot_cam.config import from_dict
from fewshot_cam.errors import UserError
from fewshot_cam.models.checkpoint import final_checkpoint, load_model, save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.training.config import PretrainConfig


def write_run(folder, select: str | None):
    folder.mkdir()
    cfg = ModelConfig(backbone="tiny")
    for seed, name in ((0, "best.pt"), (1, "last.pt")):
        torch.manual_seed(seed)
        save_checkpoint(folder / name, {"model": build_model(cfg, 3).state_dict(), "model_config": asdict(cfg),
                                        "num_classes": 3})
    if select is not None:
        (folder / "config.yaml").write_text(f"train:\n  select: {select}\n")
    return folder


@pytest.mark.parametrize("select, expected", [("last", "last.pt"), ("best-val", "best.pt"), (None, "best.pt")])
def test_run_folder_resolves_to_the_selected_checkpoint(tmp_path, select, expected):
    run = write_run(tmp_path / "run", select)
    assert final_checkpoint(run) == run / expected
    from_folder, _ = load_model(run)
    from_file, _ = load_model(run / expected)
    for a, b in zip(from_folder.state_dict().values(), from_file.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_select_raises(tmp_path):
    with pytest.raises(UserError, match="train.select 'first'"):
        from_dict(PretrainConfig, {"train": {"select": "first"}})
    run = write_run(tmp_path / "run", "first")
    with pytest.raises(UserError, match="train.select 'first'"):
        final_checkpoint(run)


def test_rfs_style_cosine_run_end_to_end(tmp_path, cli):
    """pretrain with RFS's augmentation, a cosine head and train.select last; eval of the run folder reads
    last.pt and reports Baseline++ (a cosine-pretrained checkpoint)."""
    tiny = Path(__file__).parent.parent / "configs" / "synthetic-tiny-ce.yaml"
    out = tmp_path / "run"
    code, stdout, _ = cli(
        "pretrain",
        "--config",
        tiny,
        "--head",
        "cosine",
        "--epochs",
        1,
        "--out",
        out,
        "--set",
        "augment.crop=pad",
        "--set",
        "augment.padding=2",
        "--set",
        "augment.jitter_order=random",
        "--set",
        "train.select=last",
        "--set",
        "model.normalization=rfs",
        "--set",
        "val.episodes=5",
    )
    assert code == 0 and "final model last.pt" in stdout
    result = tmp_path / "r.json"
    code, stdout, _ = cli("eval", "--checkpoint", out, "--ways", 3, "--shots", 1, "--queries", 2, "--episodes", 2,
                          "--methods", "baseline++", "--device", "cpu", "--json", result)
    record = json.loads(result.read_text())
    assert code == 0 and record["checkpoint"] == str(out / "last.pt")
    assert [r["method"] for r in record["results"]] == ["baseline++"]


def test_a_checkpoint_of_the_earlier_saol_loads_as_saol_rawlogit_psp(tmp_path):
    """Before SAOL followed the paper, head "saol" was today's saol-rawlogit-psp with its decoder layers
    directly under head. (head.reduce.*, head.fuse.*): such a file loads as that variant, same outputs."""
    cfg = ModelConfig(backbone="tiny", head="saol-rawlogit-psp")
    torch.manual_seed(0)
    model = build_model(cfg, 3).eval()
    old_keys = {k.replace("head.decoder.", "head."): v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "old.pt", {"model": old_keys, "model_config": {**asdict(cfg), "head": "saol"},
                                          "num_classes": 3})
    loaded, _ = load_model(tmp_path / "old.pt")
    x = torch.rand(2, 3, 32, 32)
    assert type(loaded.head).__name__ == "SAOLRawLogitPSPHead"
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
