"""Baseline++'s cosine head, the flattened Conv-4 embedding, stage outputs and the RFS normalisation,
each against an independent formula or library."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fewshot_cam.errors import UserError
from fewshot_cam.models.backbones import build_backbone
from fewshot_cam.models.cam import class_activation_maps
from fewshot_cam.models.classifier import NORMALIZATIONS, CosineHead
from fewshot_cam.models.factory import ModelConfig, build_model


def dist_linear(v: torch.Tensor, g: torch.Tensor, scale: float, f: torch.Tensor) -> torch.Tensor:
    """Chen et al.'s distLinear: torch's weight norm (dim 0) over a bias-free Linear, on x / (|x| + 1e-5)."""
    layer = nn.Linear(v.shape[1], v.shape[0], bias=False)
    layer = torch.nn.utils.parametrizations.weight_norm(layer, dim=0)
    with torch.no_grad():
        layer.parametrizations.weight.original0.copy_(g[:, None])
        layer.parametrizations.weight.original1.copy_(v)
    x = f / (f.norm(dim=1, keepdim=True) + 1e-5)
    return scale * layer(x)


@pytest.mark.parametrize("classes, scale", [(5, 2.0), (200, 2.0), (201, 10.0)])
def test_cosine_head_is_chens_dist_linear(classes, scale):
    torch.manual_seed(0)
    head = CosineHead(8, classes)
    assert head.scale == scale
    assert torch.allclose(head.g, head.v.norm(dim=1))  # WeightNorm starts with g = |v|
    with torch.no_grad():
        head.g.mul_(torch.rand(classes) + 0.5)  # learnt norms differ from |v|: the oracle sees g
    features = torch.randn(3, 8, 4, 4)
    ref = dist_linear(head.v.detach(), head.g.detach(), scale, features.mean(dim=(2, 3)))
    assert torch.allclose(head(features), ref, atol=1e-5)
    # the class maps are CAMs of the effective vectors: their spatial mean / (|f| + 1e-5) is the logit
    pooled = features.mean(dim=(2, 3))
    maps = head.class_maps(features)
    assert torch.allclose(maps, class_activation_maps(features, head.weight))
    assert torch.allclose(maps.mean(dim=(2, 3)) / (pooled.norm(dim=1, keepdim=True) + 1e-5), ref, atol=1e-5)


def test_cosine_head_trains_end_to_end():
    model = build_model(ModelConfig(backbone="tiny", head="cosine"), 4)
    loss = nn.functional.cross_entropy(model(torch.rand(2, 3, 32, 32)), torch.tensor([0, 3]))
    loss.backward()
    assert model.head.v.grad.abs().sum() > 0 and model.head.g.grad.abs().sum() > 0


def test_flattened_conv4_embedding_is_1600_d_at_84_px_and_the_flattened_map():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="conv4", pool="flatten"), 5).eval()
    x = torch.rand(2, 3, 84, 84)
    with torch.no_grad():
        fmap = model.forward_features(x)
        embedding = model.embed(x)
    assert fmap.shape == (2, 64, 5, 5) and embedding.shape == (2, 1600)
    assert torch.equal(embedding, fmap.flatten(1))
    avg = build_model(ModelConfig(backbone="conv4"), 5).eval()
    avg.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(avg.embed(x), fmap.mean(dim=(2, 3)))
    with pytest.raises(UserError, match="model.pool 'max'"):
        ModelConfig(pool="max")


@pytest.mark.parametrize("name, size", [("conv4", 32), ("conv4-2pool", 32), ("resnet12-tiny", 32), ("resnet18", 64)])
def test_stage_outputs_end_with_the_feature_map(name, size):
    torch.manual_seed(0)
    backbone = build_backbone(name).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        stages = backbone.forward_stages(x)
        last = backbone(x)
    assert [s.shape[1] for s in stages] == list(backbone.stage_channels)
    assert torch.equal(stages[-1], last)
    assert len({s.shape[-1] for s in stages}) > 1  # really multi-scale


def test_rfs_normalisation_is_rfs_mean_and_std():
    mean, std = NORMALIZATIONS["rfs"]
    assert mean[0] == pytest.approx(120.39586422 / 255) and std[2] == pytest.approx(72.54505529 / 255)
    model = build_model(ModelConfig(backbone="tiny", normalization="rfs"), 3)
    x = torch.rand(1, 3, 8, 8)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(x), expected)


def test_episode_cam_of_a_flattened_embedding_sums_to_the_dot_product():
    """With pool: flatten a prototype is a (C, h, w) map; class n's raw map at (x, y) is sum_k c_n[k, x, y] f_k(x, y),
    so its sum over locations is f . c_n, the class-dependent part of the euclidean logit."""
    from fewshot_cam.analysis.attribution import episode_scorer, support_prototypes

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny", pool="flatten"), 3).eval()
    support = torch.rand(2, 2, 3, 32, 32)
    protos = support_prototypes(model, support)  # (2, 16*8*8)
    scorer = episode_scorer(model, protos)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features, _ = scorer.forward(x)
        maps = scorer.class_maps(features)  # (2, N=2, 8, 8)
    assert protos.shape == (2, 16 * 8 * 8) and maps.shape == (2, 2, 8, 8)
    assert torch.allclose(maps.sum(dim=(2, 3)), features.flatten(1) @ protos.T, atol=1e-4)
