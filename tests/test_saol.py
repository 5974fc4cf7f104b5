"""SAOL head and losses against hand computations and plain loops; tiny runs lower each loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fewshot_cam.losses.saol import (
    SAOLLossConfig,
    cutmix,
    cutmix_ce,
    paste_region_loss,
    saol_total_loss,
    self_distill_loss,
    spatial_consistency_loss,
    spatial_cutmix_ce,
)
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.models.saol import SAOLHead, SAOLRawLogitPSPHead, saol_output

K = 4


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights everywhere (the attention's last conv starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module.eval()


def loop_saol(spatial: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """y[b, k] = sum over locations of A[b, x, y] * S[b, k, x, y], by plain loops."""
    b_, k_, h, w = spatial.shape
    out = torch.zeros(b_, k_, dtype=torch.float64)
    for b in range(b_):
        for k in range(k_):
            for i in range(h):
                for j in range(w):
                    out[b, k] += attention[b, i, j].double() * spatial[b, k, i, j].double()
    return out


def loop_saol_paper(spatial: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Eq. 2 by plain loops: y[b, k] = sum_xy A[b, x, y] * exp(S[b, k, x, y]) / sum_k' exp(S[b, k', x, y])."""
    b_, k_, h, w = spatial.shape
    out = torch.zeros(b_, k_, dtype=torch.float64)
    for b in range(b_):
        for i in range(h):
            for j in range(w):
                e = [math.exp(spatial[b, k, i, j].item()) for k in range(k_)]
                for k in range(k_):
                    out[b, k] += attention[b, i, j].item() * e[k] / sum(e)
    return out


def test_saol_output_eq2_on_a_hand_case():
    """Two locations, two classes: S = [[0, log 3], [log 3, 0]] (class 0 at each location), A = (0.75, 0.25).
    Per-location probabilities: (0.5, 0.5) and (0.75, 0.25) -> y = 0.75 (0.5, 0.5) + 0.25 (0.75, 0.25)
    = (0.5625, 0.4375). The raw-logit variant gives 0.75 (0, log 3) + 0.25 (log 3, 0) instead."""
    spatial = torch.tensor([[[[0.0, math.log(3)]], [[0.0, 0.0]]]])  # (1, K=2, 1, 2)
    attention = torch.tensor([[[0.75, 0.25]]])  # (1, 1, 2)
    y = saol_output(spatial, attention).exp()
    assert torch.allclose(y, torch.tensor([[0.5625, 0.4375]]), atol=1e-6)
    raw = SAOLRawLogitPSPHead.combine(None, spatial, attention)
    assert torch.allclose(raw, torch.tensor([[0.25 * math.log(3), 0.0]]), atol=1e-6)
    assert F.cross_entropy(saol_output(spatial, attention), torch.tensor([1])).item() == pytest.approx(
        -math.log(0.4375)
    )


def test_paper_head_over_stages_matches_eq2_loop():
    """The paper head reads the last ``levels`` stage maps; attention and GAP-FC come from the last one."""
    head = randomise(SAOLHead((2, 3, 5, 6), K, levels=3), 4)
    g = torch.Generator().manual_seed(5)
    maps = [torch.randn(2, c, s, s, generator=g) for c, s in ((2, 32), (3, 16), (5, 8), (6, 4))]
    out = head.forward_all(maps)
    assert len(head.decoder.reduce) == 3 and out["spatial_logits"].shape == (2, K, 4, 4)
    assert torch.allclose(out["attention"].sum(dim=(1, 2)), torch.ones(2), atol=1e-6)
    assert out["attention"].std() > 0  # not uniform: the oracle is not trivial
    assert torch.allclose(
        out["logits"].exp().double(), loop_saol_paper(out["spatial_logits"], out["attention"]), atol=1e-5
    )
    assert torch.equal(head(maps), out["logits"])
    assert torch.equal(head.class_maps(maps), out["spatial_logits"])
    assert torch.allclose(out["aux_logits"], maps[-1].mean(dim=(2, 3)) @ head.weight.T + head.fc.bias, atol=1e-5)
    earlier = [m.clone() for m in maps]
    earlier[1] += 1.0  # an earlier stage the decoder reads changes S
    assert not torch.allclose(head.forward_all(earlier)["spatial_logits"], out["spatial_logits"])


def test_rawlogit_psp_variant_is_attention_weighted_sum_of_raw_logits():
    head = randomise(SAOLRawLogitPSPHead(6, K), 0)
    features = torch.randn(3, 6, 5, 4, generator=torch.Generator().manual_seed(1))
    out = head.forward_all(features)
    assert out["attention"].std() > 0
    assert torch.allclose(out["logits"].double(), loop_saol(out["spatial_logits"], out["attention"]), atol=1e-5)
    assert torch.equal(head.class_maps(features), out["spatial_logits"])


def test_attention_softmax_over_locations_by_hand():
    head = randomise(SAOLHead(6, K), 2)
    features = torch.randn(2, 6, 3, 3, generator=torch.Generator().manual_seed(3))
    scores = head.attention(features)[:, 0]  # (B, h, w)
    out = head.forward_all(features)
    for b in range(2):
        e = [[math.exp(scores[b, i, j].item()) for j in range(3)] for i in range(3)]
        total = sum(map(sum, e))
        for i in range(3):
            for j in range(3):
                assert out["attention"][b, i, j].item() == pytest.approx(e[i][j] / total, rel=1e-5)


@pytest.mark.parametrize("head", ["saol", "saol-rawlogit-psp"])
def test_registered_heads_build_a_classifier(head):
    model = build_model(ModelConfig(backbone="tiny", head=head), K).eval()
    x = torch.rand(2, 3, 32, 32)
    head_input = model.forward_stages(x) if head == "saol" else model.forward_features(x)
    out = model.head.forward_all(head_input)
    assert model.head_takes_stages == (head == "saol")
    assert torch.equal(model(x), out["logits"])
    assert torch.allclose(out["attention"], torch.full_like(out["attention"], 1 / 64))  # zero-init attention


def test_cutmix_mask_lambda_and_pixels():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 16, 12, generator=torch.Generator().manual_seed(9))
    mixed, mask, perm, lam = cutmix(images, g)
    assert sorted(perm.tolist()) == list(range(6)) and all(perm[i] != i for i in range(6))
    for i in range(6):
        assert lam[i].item() == pytest.approx(1 - mask[i].sum().item() / (16 * 12))
        for r in range(16):
            for c in range(12):
                source = images[perm[i]] if mask[i, r, c] else images[i]
                assert torch.equal(mixed[i, :, r, c], source[:, r, c])
    rows, cols = mask.any(dim=2), mask.any(dim=1)  # a box: the mask is the product of its rows and columns
    assert torch.equal(mask, rows[:, :, None] & cols[:, None, :])
    again = cutmix(images, torch.Generator().manual_seed(0))
    assert torch.equal(again[1], mask) and torch.equal(again[2], perm)


def test_paste_and_consistency_losses_match_loops():
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0, 2:7, 1:4] = True
    mask[1, 0:3, 0:8] = True
    paste = torch.randn(2, 4, 4, generator=g)
    mixed_s, source_s = torch.randn(2, K, 4, 4, generator=g), torch.randn(2, K, 4, 4, generator=g)
    bce, kl, wsum = 0.0, 0.0, 0.0
    for b in range(2):
        for i in range(4):
            for j in range(4):
                m = mask[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2].float().mean().item()  # pasted fraction of the cell
                p = 1 / (1 + math.exp(-paste[b, i, j].item()))
                bce -= m * math.log(p) + (1 - m) * math.log(1 - p)
                ps = F.softmax(source_s[b, :, i, j].double(), 0)
                pm = F.softmax(mixed_s[b, :, i, j].double(), 0)
                kl += m * (ps * (ps / pm).log()).sum().item()
                wsum += m
    assert paste_region_loss(paste, mask).item() == pytest.approx(bce / 32, rel=1e-5)
    assert spatial_consistency_loss(mixed_s, source_s, mask).item() == pytest.approx(kl / wsum, rel=1e-5)


def test_spatial_cutmix_ce_matches_a_loop():
    """Each cell's target is the label of the image filling it, weighted by the pasted fraction m."""
    g = torch.Generator().manual_seed(6)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0, 0:3, 1:6] = True
    mask[1, 4:8, 4:8] = True
    spatial = torch.randn(2, K, 4, 4, generator=g)
    y, perm = torch.tensor([0, 3]), torch.tensor([1, 0])
    total = 0.0
    for b in range(2):
        for i in range(4):
            for j in range(4):
                m = mask[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2].float().mean().item()
                logp = F.log_softmax(spatial[b, :, i, j].double(), 0)
                total -= m * logp[y[perm[b]]].item() + (1 - m) * logp[y[b]].item()
    assert spatial_cutmix_ce(spatial, y, perm, mask).item() == pytest.approx(total / 32, rel=1e-5)


def test_self_distill_and_cutmix_ce_by_hand():
    g = torch.Generator().manual_seed(2)
    saol = torch.randn(3, K, generator=g, requires_grad=True)
    aux = torch.randn(3, K, generator=g, requires_grad=True)
    loss = self_distill_loss(saol, aux)
    ref = F.kl_div(F.log_softmax(aux, 1), F.softmax(saol, 1), reduction="batchmean")
    assert torch.allclose(loss, ref, atol=1e-6)
    loss.backward()
    assert saol.grad is None and aux.grad.abs().sum() > 0  # the SAOL output is the teacher
    y, perm, lam = torch.tensor([0, 1, 2]), torch.tensor([2, 0, 1]), torch.tensor([0.25, 0.5, 1.0])
    logp = F.log_softmax(saol.detach(), 1)
    hand = sum(-(lam[b] * logp[b, y[b]] + (1 - lam[b]) * logp[b, y[perm[b]]]) for b in range(3)) / 3
    assert cutmix_ce(saol.detach(), y, perm, lam).item() == pytest.approx(hand.item(), rel=1e-5)


@pytest.fixture(scope="module")
def toy():
    g = torch.Generator().manual_seed(3)
    return torch.rand(8, 3, 32, 32, generator=g), torch.arange(8) % K


WEIGHTS = SAOLLossConfig(paste=1.0, consistency=1.0)  # every term on


def graph_terms(model, x, y):
    """Every SAOL loss with its graph (saol_total_loss returns its parts detached), on a fixed CutMix."""
    clean = model.head.forward_all(model.forward_stages(x))
    mixed_x, mask, perm, lam = cutmix(x, torch.Generator().manual_seed(4))
    mixed = model.head.forward_all(model.forward_stages(mixed_x))
    total, parts = saol_total_loss(clean, y, WEIGHTS, mixed, mask, perm, lam)
    terms = {
        "self_distill": self_distill_loss(clean["logits"], clean["aux_logits"]),
        "aux_ce": F.cross_entropy(clean["aux_logits"], y),
        "cutmix_ce": cutmix_ce(mixed["logits"], y, perm, lam),
        "spatial_ce": spatial_cutmix_ce(mixed["spatial_logits"], y, perm, mask),
        "paste": paste_region_loss(mixed["paste_logits"], mask),
        "consistency": spatial_consistency_loss(mixed["spatial_logits"], clean["spatial_logits"][perm], mask),
    }
    weights = WEIGHTS
    assert set(parts) == set(terms)
    assert torch.allclose(total, sum(getattr(weights, k) * v for k, v in terms.items()))
    terms["total"] = total + F.cross_entropy(clean["logits"], y)
    return terms, clean, mixed, perm, mask


def test_consistency_source_is_detached(toy):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny", head="saol"), K)
    _, clean, mixed, perm, mask = graph_terms(model, *toy)
    source = clean["spatial_logits"]
    source.retain_grad()
    spatial_consistency_loss(mixed["spatial_logits"], source[perm], mask).backward()
    assert source.grad is None
    assert model.head.spatial.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("term", ["self_distill", "aux_ce", "cutmix_ce", "spatial_ce", "paste", "consistency", "total"])
def test_tiny_run_lowers_each_loss(toy, term):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny", head="saol"), K)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    values = []
    for _ in range(20):
        loss = graph_terms(model, *toy)[0][term]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(loss.item())
    assert values[-1] < 0.8 * values[0], values
