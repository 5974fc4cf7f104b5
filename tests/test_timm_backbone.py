"""timm models as backbones (``--backbone timm:NAME``): stage maps as timm gives them, weights only from
a file, and pretrain + eval end to end with the linear, cosine and SAOL heads (tiny timm test models)."""

from __future__ import annotations

import pytest
import torch

from fewshot_cam.models.factory import ModelConfig, build_model

timm = pytest.importorskip("timm")

FAST = ["--dataset", "synthetic", "--image-size", "32", "--epochs", "1", "--device", "cpu", "--loss", "camloss",
        "--set", "optim.batch_size=16", "--set", "optim.steps_per_epoch=2", "--set", "val.episodes=5",
        "--set", "loss.warmup_epochs=0", "--set", "run.tensorboard=false"]


def test_stages_are_timms_feature_maps_and_the_last_feeds_the_head():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="timm:test_resnet"), num_classes=7)
    torch.manual_seed(0)
    reference = timm.create_model("test_resnet", pretrained=False, features_only=True)
    x = torch.rand(2, 3, 32, 32)
    model.eval(), reference.eval()
    ours, theirs = model.backbone.forward_stages(x), reference(x)
    assert len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert model.backbone.stage_channels == tuple(reference.feature_info.channels())
    assert torch.equal(model.backbone(x), theirs[-1]) and model(x).shape == (2, 7)


def test_weights_from_a_file_match_timms_forward_features(tmp_path):
    torch.manual_seed(1)
    full = timm.create_model("test_resnet", pretrained=False).eval()
    torch.save(full.state_dict(), tmp_path / "w.pth")  # classifier keys included: ignored
    model = build_model(ModelConfig(backbone="timm:test_resnet", weights=str(tmp_path / "w.pth")), 5).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.backbone(x), full.forward_features(x), atol=1e-6)


@pytest.mark.parametrize("head", ["linear", "cosine", "saol"])
def test_pretrain_and_eval_a_timm_backbone(tmp_path, cli, head):
    out = tmp_path / head
    code, stdout, err = cli("pretrain", "--backbone", "timm:test_resnet", "--head", head, "--out", out, *FAST)
    assert code == 0, err
    code, stdout, err = cli("eval", "--checkpoint", out / "best.pt", "--ways", "5", "--shots", "1", "--episodes", "10",
                            "--methods", "protonet", "--device", "cpu")
    assert code == 0 and "protonet" in stdout and "+-" in stdout, err


def test_unknown_timm_model_and_missing_weights_are_user_errors(tmp_path, cli):
    code, _, err = cli("pretrain", "--backbone", "timm:no_such_net", "--out", tmp_path / "a", *FAST)
    assert code == 2 and "unknown timm model 'no_such_net'" in err
    code, _, err = cli("pretrain", "--backbone", "timm:test_resnet", "--set", f"model.weights={tmp_path}/none.pth",
                       "--out", tmp_path / "b", *FAST)
    assert code == 2 and "model.weights: no such file" in err
    code, _, err = cli("pretrain", "--backbone", "conv4", "--set", "model.weights=x.pth", "--out", tmp_path / "c",
                       *FAST)
    assert code == 2 and "model.weights is for timm:NAME backbones" in err
