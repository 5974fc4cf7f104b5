"""CAM maths and CAM-loss against closed forms and a plain-loop reference."""

import pytest
import torch
import torch.nn.functional as F

from fewshot_cam.config import from_dict
from fewshot_cam.errors import UserError
from fewshot_cam.losses.camloss import LossConfig, alpha_at, cam_loss, total_loss
from fewshot_cam.models.cam import caam, class_activation_maps, minmax_normalize, target_cam
from fewshot_cam.models.factory import ModelConfig, build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="tiny"), num_classes=5).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 3, 32, 32, generator=g), torch.randint(0, 5, (6,), generator=g)


def test_cam_identity_spatial_mean_plus_bias_is_logit(model, batch):
    x, _ = batch
    with torch.no_grad():
        f = model.forward_features(x)
        logits = model.forward_head(f)
        maps = model.head.class_maps(f)  # (B, K, h, w)
    torch.testing.assert_close(maps.mean(dim=(2, 3)) + model.head.fc.bias, logits, rtol=0, atol=1e-5)


def test_minmax_normalize_range_and_constant_guard():
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(3, 4, 5, 6, generator=g) * 7
    maps[1, 2] = 3.25  # a constant map
    out = minmax_normalize(maps)
    flat = out.flatten(-2)
    assert (out >= 0).all() and (out <= 1).all()
    assert torch.equal(out[1, 2], torch.zeros(5, 6))
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2] = False
    torch.testing.assert_close(flat.amin(-1)[mask], torch.zeros(11))
    torch.testing.assert_close(flat.amax(-1)[mask], torch.ones(11))


def test_maps_are_float32_under_bf16_autocast(model, batch):
    x, y = batch
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        f = model.forward_features(x)
        maps = (class_activation_maps(f, model.head.weight), target_cam(f, model.head.weight, y), caam(f))
        loss = cam_loss(f, model.head.weight, y)
    assert f.dtype == torch.bfloat16
    assert all(m.dtype == torch.float32 for m in maps) and loss.dtype == torch.float32
    torch.testing.assert_close(maps[2], f.float().sum(1))


def reference_cam_loss(f: torch.Tensor, w: torch.Tensor, y: torch.Tensor, squared: bool) -> torch.Tensor:
    """One image at a time, the paper's formula written out."""
    total = 0.0
    for b in range(f.shape[0]):
        agnostic = f[b].sum(0)
        cam = (w[y[b]][:, None, None] * f[b]).sum(0)
        norm = [(m - m.min()) / (m.max() - m.min()) for m in (agnostic, cam)]
        d = norm[0] - norm[1]
        total = total + (d.square() if squared else d.abs()).mean()
    return total / f.shape[0]


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_cam_loss_matches_plain_loop(batch, distance):
    g = torch.Generator().manual_seed(3)
    f = torch.randn(4, 8, 5, 5, generator=g)
    w = torch.randn(3, 8, generator=g)
    y = torch.tensor([0, 2, 1, 2])
    expected = reference_cam_loss(f, w, y, squared=distance == "l2")
    torch.testing.assert_close(cam_loss(f, w, y, distance), expected, rtol=1e-5, atol=1e-6)


def test_cam_loss_trains_backbone_only(batch):
    """L_CAM leaves the head without gradient; adding it to L_CE leaves the head's gradient unchanged."""
    x, y = batch
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny"), num_classes=5)
    f = model.forward_features(x)
    cam_loss(f, model.head.weight, y).backward()
    assert model.head.fc.weight.grad is None and model.head.fc.bias.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())

    def grads(cfg: LossConfig) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        f = model.forward_features(x)
        loss, _ = total_loss(model.forward_head(f), f, model.head.weight, y, cfg, epoch=0)
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    ce, both = grads(LossConfig(loss="ce")), grads(LossConfig(loss="camloss", alpha=3.0))
    for name in ("head.fc.weight", "head.fc.bias"):
        assert ce[name].abs().sum() > 0
        torch.testing.assert_close(both[name], ce[name])
    assert all(ce[name].abs().sum() > 0 for name in ce)
    assert any(not torch.allclose(both[name], ce[name]) for name in ce if name.startswith("backbone"))


def test_total_loss_is_ce_plus_alpha_cam(model, batch):
    x, y = batch
    with torch.no_grad():
        f = model.forward_features(x)
        logits = model.forward_head(f)
    cfg = LossConfig(loss="camloss", alpha=2.5, warmup_epochs=2, distance="l2")
    ce = F.cross_entropy(logits, y)
    cam = reference_cam_loss(f, model.head.weight, y, squared=True)
    for epoch, alpha in [(0, 0.0), (1, 0.0), (2, 2.5), (9, 2.5)]:
        loss, parts = total_loss(logits, f, model.head.weight, y, cfg, epoch)
        torch.testing.assert_close(loss, ce + alpha * cam, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(parts["cam"], cam, rtol=1e-5, atol=1e-6)
        assert float(parts["alpha"]) == alpha and torch.equal(parts["ce"], ce)


def test_alpha_schedule_and_config():
    cfg = from_dict(LossConfig, {"loss": "camloss", "alpha": "1.0e-1", "warmup_epochs": 3})
    assert [alpha_at(e, cfg) for e in range(5)] == [0.0, 0.0, 0.0, 0.1, 0.1]
    assert all(alpha_at(e, LossConfig(loss="ce", alpha=4.0)) == 0.0 for e in range(5))
    assert alpha_at(0, LossConfig(loss="camloss")) == 1.0
    with pytest.raises(UserError, match="distance 'l3'"):
        LossConfig(distance="l3")
    with pytest.raises(UserError, match="loss.*'focal'"):
        from_dict(LossConfig, {"loss": "focal"})
