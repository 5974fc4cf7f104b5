"""CAM targets on novel and base classes (prototype CAM, CAAM, GT-known, top-1) and ``cam`` reporting
MaxBoxAccV2, PxAP and faithfulness for them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from test_cam_cli import setup  # noqa: F401  (the tiny imagefolder and checkpoints)

from fewshot_cam.analysis.attribution import upsample_normalize
from fewshot_cam.analysis.cam_targets import build_target, default_target, support_rows, targeted_maps
from fewshot_cam.analysis.wsol_metrics import MaxBoxAccV2
from fewshot_cam.data.split import Split
from fewshot_cam.data.transforms import to_float
from fewshot_cam.errors import UserError
from fewshot_cam.models.backbones import build_backbone
from fewshot_cam.models.classifier import FewShotClassifier, LinearHead


@pytest.fixture(scope="module")
def model() -> FewShotClassifier:
    torch.manual_seed(0)
    m = FewShotClassifier(build_backbone("tiny"), LinearHead(16, 3))
    for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return m.eval()


def make_split(names=("a", "b", "c"), per_class=6) -> Split:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(names)), per_class)
    images = rng.integers(0, 256, (len(labels), 16, 16, 3), dtype=np.uint8)
    return Split(images, labels, tuple(names), name="toy/test")


BASE = {"class_names": ["a", "b", "c"]}
NOVEL_CKPT = {"class_names": ["x", "y", "z"]}


def test_support_images_are_of_the_class_and_not_among_the_sampled():
    split, rows = make_split(), np.array([0, 1, 7, 13, 14])
    support = support_rows(split, rows, np.array([0, 1, 2]), 3, seed=0)
    assert support.shape == (3, 3) and not set(support.ravel()) & set(rows.tolist())
    assert (split.labels[support] == np.arange(3)[:, None]).all()
    with pytest.raises(UserError, match="support-shots 5"):
        support_rows(split, rows, np.array([0]), 5, seed=0)


def test_prototype_cam_is_the_prototype_weighted_feature_map(model):
    split, rows = make_split(), np.array([2, 9, 15, 4])
    spec = build_target("proto", model, NOVEL_CKPT, split, rows, shots=3, seed=0)
    assert spec.classes.tolist() == [0, 1, 2, 0]  # the image's own class, indexed in the episode
    got = targeted_maps("cam", spec, split.images[rows], torch.device("cpu"))
    support = support_rows(split, rows, np.array([0, 1, 2]), 3, seed=0)  # the same draw
    with torch.no_grad():
        protos = model.embed(to_float(split.images[support.ravel()])).view(3, 3, -1).mean(dim=1)  # (3, C)
        features = model.forward_features(to_float(split.images[rows]))  # (4, C, h, w)
    closed = torch.einsum("bchw,bc->bhw", features, protos[[0, 1, 2, 0]])  # sum_k p_{c,k} A_k
    assert torch.allclose(got, upsample_normalize(closed, (16, 16)), atol=1e-5)
    wrong = torch.einsum("bchw,bc->bhw", features, protos[[1, 2, 0, 1]])
    assert not torch.allclose(got, upsample_normalize(wrong, (16, 16)), atol=1e-3)


def test_caam_ignores_the_class_and_gt_needs_base_classes(model):
    split, rows = make_split(), np.array([0, 6, 12])
    assert default_target(split, BASE) == "gt" and default_target(split, NOVEL_CKPT) == "proto"
    spec = build_target("caam", model, BASE, split, rows)
    with torch.no_grad():
        features = model.forward_features(to_float(split.images[rows]))
    expected = upsample_normalize(features.sum(dim=1), (16, 16))
    assert torch.allclose(targeted_maps("gradcam", spec, split.images[rows], torch.device("cpu")), expected, atol=1e-5)
    gt = build_target("gt", model, BASE, split, rows)
    assert gt.classes.tolist() == [0, 1, 2] and "GT-known" in gt.description
    with pytest.raises(UserError, match="--target gt needs"):
        build_target("gt", model, NOVEL_CKPT, split, rows)
    assert "not the image's class" in build_target("top1", model, NOVEL_CKPT, split, rows).description


def test_cam_cli_reports_wsol_and_faithfulness_for_the_prototype_target(cli, setup):  # noqa: F811
    out = setup / "proto"
    code, stdout, err = cli("cam", "--checkpoint", setup / "ce.pt", "--n", "4", "--support-shots", "1",
                            "--faithfulness", "--steps", "4", "--out", out, "--device", "cpu")
    assert code == 0, err
    assert "MaxBoxAccV2" in stdout and "Average Drop" in stdout and "prototype" in stdout
    record = json.loads((out / "localization.json").read_text())
    assert record["targets"]["ce"]["target"] == "proto"
    assert record["faithfulness"]["ce"]["n"] == 4 and record["pxap"]["ce"]["pixels"] == 4 * 16 * 16
    from fewshot_cam.analysis.cam_pictures import sample_rows
    from fewshot_cam.data.datasets import load_split
    from fewshot_cam.models.checkpoint import load_model

    split = load_split("imagefolder", setup / "data", "test", 16)
    rows = sample_rows(split, 4, 0)
    model, ckpt = load_model(setup / "ce.pt")
    spec = build_target("proto", model, ckpt, split, rows, 1, 0)
    metric = MaxBoxAccV2()
    metric.update(targeted_maps("cam", spec, split.images[rows], torch.device("cpu")).numpy(), split.masks[rows])
    expected = metric.summary()
    assert record["maxboxacc"]["ce"]["maxboxacc"] == pytest.approx(expected["maxboxacc"])
    assert record["maxboxacc"]["ce"]["maxboxacc_v2"] == pytest.approx(expected["maxboxacc_v2"])
