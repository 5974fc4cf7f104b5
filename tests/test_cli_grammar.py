"""One flag grammar: new names, the old spellings as hidden aliases, --config / --set for every command
with settings, and the resolved settings saved beside each output."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
import yaml

from fewshot_cam.cli import build_parser
from fewshot_cam.models.checkpoint import save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("grammar") / "tiny.pt"
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny")
    save_checkpoint(path, {"model": build_model(cfg, 64).state_dict(), "model_config": asdict(cfg), "num_classes": 64,
                           "config": {"data": {"dataset": "synthetic", "image_size": 16}}})
    return path


def parse(*argv):
    from fewshot_cam.cli.common import resolve_settings

    argv = [str(a) for a in argv]
    parser = build_parser(argv)
    return resolve_settings(parser, argv, parser.parse_args(argv))


@pytest.mark.parametrize("command,old,new,dest,value", [
    (["cam", "--checkpoint", "c.pt"], "--n", "--images", "images", 7),
    (["cam", "--checkpoint", "c.pt"], "--threshold", "--cam-threshold", "cam_threshold", 0.35),
    (["cam", "--checkpoint", "c.pt"], "--batch-size", "--image-batch", "image_batch", 9),
    (["eval"], "--batch-size", "--episode-batch", "episode_batch", 11),
    (["ablate"], "--batch-size", "--episode-batch", "episode_batch", 12),
    (["ablate"], "--cam-batch-size", "--image-batch", "image_batch", 13),
    (["episodes", "make", "--dataset", "synthetic"], "--n", "--episodes", "episodes", 14),
])
def test_old_spelling_is_a_hidden_alias_of_the_new_flag(command, old, new, dest, value, capsys):
    assert getattr(parse(*command, new, value), dest) == value
    assert getattr(parse(*command, old, value), dest) == value
    with pytest.raises(SystemExit):
        parse(*command, "--help")
    help_text = capsys.readouterr().out
    assert new in help_text and f"{old} " not in help_text.replace(new, "")


def test_config_file_then_flags_then_set(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("ways: 3\nshots: 2\nepisode-batch: 7\nmethods: [protonet, logreg]\ndata:\n  crop: box\n")
    args = parse("eval", "--config", path, "--shots", "4", "--set", "ways=6", "--set", "data.masks=boxes")
    assert (args.ways, args.shots, args.episode_batch, args.methods) == (6, 4, 7, "protonet,logreg")
    from fewshot_cam.cli.common import data_option_values

    assert data_option_values(args) == {"crop": "box", "masks": "boxes"}


@pytest.mark.parametrize("text,message", [("wayz: 3\n", "unknown setting 'wayz'"), ("ways: three\n", "'ways'")])
def test_bad_settings_name_the_key(tmp_path, cli, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, _, err = cli("eval", "--config", path, "--checkpoint", "x.pt")
    assert code == 2 and message in err and str(path) in err
    code, _, err = cli("eval", "--checkpoint", "x.pt", "--set", "wayz=3")
    assert code == 2 and "unknown setting 'wayz'" in err


def test_eval_and_cam_save_their_resolved_settings(tmp_path, cli, checkpoint):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"checkpoint: {checkpoint}\nways: 5\nshots: 1\nepisodes: 10\nmethods: protonet\n")
    code, _, err = cli("eval", "--config", cfg, "--json", tmp_path / "r.json", "--device", "cpu")
    assert code == 0, err
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert (settings["ways"], settings["episodes"], settings["checkpoint"], settings["methods"]) == (
        5, 10, str(checkpoint), "protonet")
    code, _, err = cli("cam", "--checkpoint", checkpoint, "--images", "4", "--pictures", "4", "--out",
                       tmp_path / "cams", "--cam-threshold", "0.3", "--device", "cpu")
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "cams" / "settings.yaml").read_text())
    assert saved["images"] == 4 and saved["cam_threshold"] == 0.3
    record = json.loads((tmp_path / "cams" / "localization.json").read_text())
    assert record["n"] == 4 and record["settings"]["cam_threshold"] == 0.3


def test_report_json_carries_its_settings(tmp_path, cli, checkpoint):
    for seed in (0, 1):
        assert cli("eval", "--checkpoint", checkpoint, "--ways", "5", "--shots", "1", "--episodes", "10", "--seed",
                   seed, "--methods", "protonet", "--device", "cpu", "--json", tmp_path / f"r{seed}.json")[0] == 0
    code, _, err = cli("report", tmp_path / "r0.json", tmp_path / "r1.json", "--json", tmp_path / "rep.json")
    assert code == 0, err
    settings = json.loads((tmp_path / "rep.json").read_text())["settings"]
    assert settings["results"] == [str(tmp_path / "r0.json"), str(tmp_path / "r1.json")]
