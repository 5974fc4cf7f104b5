"""Zagoruyko & Komodakis attention transfer ("zk-at") and the RFS-distill weights, by hand and by loops."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fewshot_cam.config import load_config
from fewshot_cam.errors import UserError
from fewshot_cam.losses.distill import DistillConfig, TeacherOutput, distill_loss, kd_loss, zk_at_loss
from fewshot_cam.training.config import PretrainConfig

CONFIGS = Path(__file__).parent.parent / "configs"


def test_zk_at_on_a_hand_case():
    """Stage 2: student attention (1, 0) vs teacher (0, 1) -> mean of (1, 1) = 1. Stage 3: a 2x2 student map
    pooled to the teacher's 1x1 -> both normalise to (1) -> 0. Stage 1 is skipped (RepDistiller's feat[1:-1])."""
    s1 = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])  # (1, 2, 1, 2): mean_c f^2 = (1, 0)
    t1 = torch.tensor([[[[0.0, 2.0]], [[0.0, 0.0]]]])  # mean_c f^2 = (0, 2) -> normalised (0, 1)
    s2, t2 = torch.rand(1, 3, 2, 2) + 0.1, torch.rand(1, 4, 1, 1) + 0.1
    s0, t0 = torch.randn(1, 2, 4, 4), torch.randn(1, 5, 4, 4)  # would add a non-zero term if used
    assert zk_at_loss([s0, s1, s2], [t0, t1, t2]).item() == pytest.approx(1.0, abs=1e-6)


def loop_zk_at(student, teacher) -> float:
    """RepDistiller's AT(p=2) written with loops over images and locations."""
    total = 0.0
    for f_s, f_t in zip(student[1:], teacher[1:]):
        size = min(f_s.shape[-1], f_t.shape[-1])
        f_s, f_t = F.adaptive_avg_pool2d(f_s, size), F.adaptive_avg_pool2d(f_t, size)
        diff = 0.0
        for b in range(len(f_s)):
            a_s = [(f_s[b, :, i, j] ** 2).mean().item() for i in range(size) for j in range(size)]
            a_t = [(f_t[b, :, i, j] ** 2).mean().item() for i in range(size) for j in range(size)]
            n_s, n_t = math.sqrt(sum(v * v for v in a_s)), math.sqrt(sum(v * v for v in a_t))
            diff += sum((p / n_s - q / n_t) ** 2 for p, q in zip(a_s, a_t))
        total += diff / (len(f_s) * size * size)
    return total


def test_zk_at_matches_a_loop_and_teacher_is_detached():
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(2, c, s, s, generator=g, requires_grad=True) for c, s in ((3, 8), (4, 4), (5, 2))]
    teacher = [torch.randn(2, c, s, s, generator=g, requires_grad=True) for c, s in ((6, 8), (7, 2), (8, 2))]
    loss = zk_at_loss(student, teacher)
    assert loss.item() == pytest.approx(loop_zk_at(student, teacher), rel=1e-5)
    loss.backward()
    assert all(t.grad is None for t in teacher) and student[1].grad.abs().sum() > 0
    with pytest.raises(UserError, match="as many stages"):
        zk_at_loss(student[:2], teacher)


def test_distill_loss_with_zk_at_and_ce_weight():
    g = torch.Generator().manual_seed(1)
    logits, t_logits = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    y = torch.tensor([0, 2, 3])
    student = [torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 2, 2, generator=g)]
    teacher = [torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 2, 2, generator=g)]
    out = TeacherOutput(t_logits, teacher[-1], torch.randn(4, 2, generator=g), teacher)
    cfg = DistillConfig(mode="zk-at", teacher="t.pt", ce_weight=0.5, beta=0.5, gamma=1000.0, tau=4.0)
    loss, parts = distill_loss(logits, student[-1], torch.randn(4, 2), y, out, cfg, student)
    assert set(parts) == {"kd", "zk-at"}
    ce = F.cross_entropy(logits, y)
    expected = -0.5 * ce + 0.5 * kd_loss(logits, t_logits, 4.0) + 1000.0 * zk_at_loss(student, teacher)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)  # + the loop's L_ce: 0.5 CE in all


def test_rfs_distill_config_has_rfs_weights():
    cfg = load_config(PretrainConfig, CONFIGS / "mini-imagenet-resnet12-rfs-distill.yaml")
    d = cfg.distill
    assert (d.mode, d.ce_weight, d.beta, d.tau) == ("kd", 0.5, 0.5, 4.0)
    assert d.teacher.endswith("mini-imagenet-resnet12-rfs/last.pt") and cfg.train.select == "last"
    with pytest.raises(UserError, match="distill.mode 'attention'"):
        DistillConfig(mode="attention", teacher="t.pt")
