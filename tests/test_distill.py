"""Distillation losses against hand computations and plain loops; the teacher stays frozen."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fewshot_cam.errors import UserError
from fewshot_cam.losses.distill import (
    DistillConfig,
    TeacherOutput,
    at_loss,
    ccm_loss,
    distill_loss,
    kd_loss,
    teacher_outputs,
)
from fewshot_cam.models.checkpoint import save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.training.pretrain import load_teacher

K = 5


def loop_minmax(m: torch.Tensor) -> torch.Tensor:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi - lo > 1e-6 else torch.zeros_like(m)


def loop_target_cam(f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """f: (C, h, w); w: (C,) -> sum_c w_c f_c."""
    out = torch.zeros(f.shape[1:], dtype=torch.float64)
    for c in range(f.shape[0]):
        out += w[c].double() * f[c].double()
    return out


def loop_resize(m: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(m[None, None].double(), size=size, mode="bilinear", align_corners=False)[0, 0]


def loop_map_loss(student_maps, teacher_maps, distance):
    total = 0.0
    for s, t in zip(student_maps, teacher_maps):
        t = loop_minmax(loop_resize(t, s.shape))
        s = loop_minmax(s)
        diff = s - t
        total += (diff.abs() if distance == "l1" else diff**2).mean().item()
    return total / len(student_maps)


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return {
        "fs": torch.randn(4, 6, 8, 8, generator=g),
        "ws": torch.randn(K, 6, generator=g),
        "ft": torch.randn(4, 3, 3, 5, generator=g),  # another backbone: other channels and size
        "wt": torch.randn(K, 3, generator=g),
        "y": torch.tensor([0, 3, 4, 3]),
        "zs": torch.randn(4, K, generator=g),
        "zt": torch.randn(4, K, generator=g),
    }


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_kd_matches_kl_div_and_hand_sum(batch, tau):
    zs, zt = batch["zs"], batch["zt"]
    ref = tau**2 * F.kl_div(F.log_softmax(zs / tau, 1), F.softmax(zt / tau, 1), reduction="batchmean")
    hand = 0.0
    for s, t in zip(zs.tolist(), zt.tolist()):
        ps = [math.exp(v / tau) for v in s]
        pt = [math.exp(v / tau) for v in t]
        ps, pt = [p / sum(ps) for p in ps], [p / sum(pt) for p in pt]
        hand += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    hand *= tau**2 / len(zs)
    got = kd_loss(zs, zt, tau)
    assert torch.allclose(got, ref, atol=1e-6)
    assert got.item() == pytest.approx(hand, rel=1e-5)
    assert kd_loss(zs, zs.clone(), tau).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_at_and_ccm_match_plain_loops_across_map_sizes(batch, distance):
    fs, ws, ft, wt, y = batch["fs"], batch["ws"], batch["ft"], batch["wt"], batch["y"]
    teacher = [loop_target_cam(ft[b], wt[y[b]]) for b in range(len(y))]
    student_cam = [loop_target_cam(fs[b], ws[y[b]]) for b in range(len(y))]
    student_caam = [fs[b].double().sum(0) for b in range(len(y))]
    at = at_loss(fs, ws, ft, wt, y, distance)
    ccm = ccm_loss(fs, ft, wt, y, distance)
    assert at.item() == pytest.approx(loop_map_loss(student_cam, teacher, distance), rel=1e-4)
    assert ccm.item() == pytest.approx(loop_map_loss(student_caam, teacher, distance), rel=1e-4)


def test_gradients_reach_student_features_only(batch):
    fs = batch["fs"].clone().requires_grad_(True)
    ws = batch["ws"].clone().requires_grad_(True)
    ft = batch["ft"].clone().requires_grad_(True)
    wt = batch["wt"].clone().requires_grad_(True)
    zs = batch["zs"].clone().requires_grad_(True)
    zt = batch["zt"].clone().requires_grad_(True)
    (at_loss(fs, ws, ft, wt, batch["y"]) + ccm_loss(fs, ft, wt, batch["y"]) + kd_loss(zs, zt, 4.0)).backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0 and torch.isfinite(fs.grad).all()
    assert zs.grad is not None and zs.grad.abs().sum() > 0
    assert ws.grad is None  # the map terms use the head weight detached, as CAM-loss does
    assert ft.grad is None and wt.grad is None and zt.grad is None


def test_config_checks():
    with pytest.raises(UserError, match="teacher"):
        DistillConfig(mode="kd")
    with pytest.raises(UserError, match="distance"):
        DistillConfig(distance="cosine")
    assert DistillConfig().mode == "none"


def test_none_adds_nothing(batch):
    out = TeacherOutput(batch["zt"], batch["ft"], batch["wt"])
    loss, parts = distill_loss(batch["zs"], batch["fs"], batch["ws"], batch["y"], out, DistillConfig())
    assert loss.item() == 0.0 and parts == {}


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet12-tiny")
    model = build_model(cfg, K)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": {"backbone": cfg.backbone,
                    "drop_block": cfg.drop_block, "head": cfg.head}, "num_classes": K})
    return path


def test_load_teacher_freezes_and_checks_classes(teacher_path):
    teacher = load_teacher(teacher_path, K)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    with pytest.raises(UserError, match="classes"):
        load_teacher(teacher_path, K + 1)


@pytest.mark.parametrize("mode", ["kd", "at", "ccm"])
def test_tiny_run_lowers_loss_and_leaves_teacher_alone(teacher_path, mode):
    """ResNet-12 (tiny) teacher, Conv (tiny) student: maps 2x2 vs 8x8."""
    teacher = load_teacher(teacher_path, K)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(1)
    student = build_model(ModelConfig(backbone="tiny"), K)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, K, (8,), generator=g)
    cfg = DistillConfig(mode=mode, teacher=str(teacher_path))
    out = teacher_outputs(teacher, x)
    assert not out.features.requires_grad
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        features = student.forward_features(x)
        loss, parts = distill_loss(student.forward_head(features), features, student.head.weight, y, out, cfg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(parts) == {"kd"} | ({mode} if mode != "kd" else set())
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
