"""Results name the cosine fine-tuning for what it is: Baseline++ only on a cosine-pretrained checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from fewshot_cam.evaluation.run import distinct_methods, reported_name
from fewshot_cam.models.checkpoint import save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model


def make_checkpoint(path, head: str):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny", head=head)
    save_checkpoint(path, {
        "model": build_model(cfg, 10).state_dict(), "model_config": asdict(cfg), "num_classes": 10,
        "config": {"data": {"dataset": "synthetic", "root": None, "image_size": 32}},
    })
    return path


def test_reported_names():
    linear, cosine = {"model_config": {"head": "linear"}}, {"model_config": {"head": "cosine"}}
    assert reported_name("baseline++", linear) == "cosine-finetune"
    assert reported_name("cosine-finetune", cosine) == "baseline++"
    assert reported_name("baseline++", cosine) == "baseline++"
    assert reported_name("baseline", cosine) == "baseline"
    assert distinct_methods(["protonet", "baseline++", "cosine-finetune"], linear) == ["protonet", "baseline++"]


@pytest.mark.parametrize("head, name", [("linear", "cosine-finetune"), ("cosine", "baseline++")])
def test_eval_reports_the_pretraining_in_the_name(head, name, tmp_path, cli):
    checkpoint = make_checkpoint(tmp_path / "m.pt", head)
    out = tmp_path / "r.json"
    code, stdout, _ = cli("eval", "--checkpoint", checkpoint, "--ways", 3, "--shots", 1, "--queries", 2,
                          "--episodes", 2, "--methods", "protonet,baseline++", "--device", "cpu", "--json", out)
    assert code == 0 and f"| {name}" in stdout
    assert [r["method"] for r in json.loads(out.read_text())["results"]] == ["protonet", name]
