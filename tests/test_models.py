"""Backbones, model factory and feature extraction, against learn2learn, torchvision and plain loops."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from fewshot_cam import learn2learn_adapter
from fewshot_cam.errors import UserError
from fewshot_cam.models.backbones import build_backbone
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.models.features import extract_feature_maps, extract_features
from fewshot_cam.models.resnet import DropBlock, ResNet12, ResNet18


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_resnet12_matches_learn2learn():
    """Same parameter names and count (~12.4M) as learn2learn's ResNet-12; same map for one 84 px image."""
    torch.manual_seed(0)
    ours = ResNet12().eval()
    theirs = learn2learn_adapter.resnet12_backbone().eval()
    assert n_params(ours) == n_params(theirs) == 12_424_320
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(1, 3, 84, 84)
    with torch.no_grad():
        maps = ours(x)
        flat = theirs(x)  # (1, 640 * 5 * 5), the map flattened
    assert maps.shape == (1, 640, 5, 5)
    torch.testing.assert_close(maps.flatten(1), flat, rtol=1e-5, atol=1e-5)


def test_resnet18_is_torchvision_without_pool_and_fc():
    torch.manual_seed(3)
    ours = ResNet18().eval()
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None).eval()
    reference.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        maps = ours(x)
        pooled = reference(x)
    assert maps.shape == (2, 512, 2, 2) and ours.out_channels == 512
    torch.testing.assert_close(maps.mean(dim=(2, 3)), pooled, rtol=1e-5, atol=1e-5)


def test_backbone_options_are_checked():
    with pytest.raises(UserError, match="resnet13.*choose from"):
        build_backbone("resnet13")
    with pytest.raises(UserError, match="conv4.*drop_block"):
        build_model(ModelConfig(backbone="conv4", drop_block=True), 5)
    with pytest.raises(UserError, match="head 'saol2'.*linear"):
        ModelConfig(head="saol2")


def test_build_model_heads_match_backbone_width():
    model = build_model(ModelConfig(backbone="resnet12-tiny", drop_block=True), num_classes=7)
    assert model.head.weight.shape == (7, model.out_channels) == (7, 32)
    drops = [m for m in model.modules() if isinstance(m, DropBlock)]
    assert len(drops) == 2 and all(d.drop_rate == 0.1 for d in drops)


def test_dropblock_matches_a_plain_loop():
    """Every drawn centre zeroes a bs x bs square (offset like learn2learn), survivors are rescaled."""
    block = DropBlock(drop_rate=0.3, block_size=3, ramp_steps=1).train()
    x = torch.rand(2, 3, 7, 7) + 0.5
    torch.manual_seed(11)
    out = block(x)
    torch.manual_seed(11)
    gamma = 0.3 / 9 * 49 / 25
    centres = torch.rand(2, 3, 5, 5) < gamma
    keep = torch.ones(2, 3, 7, 7)
    for b, c, i, j in centres.nonzero().tolist():
        keep[b, c, i : i + 3, j : j + 3] = 0
    expected = x * keep * keep.numel() / keep.sum()
    assert centres.any() and (keep == 0).any()
    torch.testing.assert_close(out, expected)
    assert int(block.state_dict()["steps"]) == 1
    torch.testing.assert_close(block.eval()(x), x)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="tiny"), num_classes=4)


def test_extract_features_equals_embed_in_a_loop(tiny_model):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    tiny_model.train()
    feats = extract_features(tiny_model, images, batch_size=4)
    maps = extract_feature_maps(tiny_model, torch.from_numpy(images), batch_size=3)
    assert tiny_model.training  # mode restored
    tiny_model.eval()
    with torch.no_grad():
        rows = [tiny_model.embed(torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255) for im in images]
    expected = torch.cat(rows)
    assert feats.dtype == torch.float32 and feats.shape == (10, 16)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), expected, rtol=1e-5, atol=1e-5)
    assert not feats.requires_grad
    tiny_model.train()
    logits = tiny_model.head(maps)
    torch.testing.assert_close(logits, F.linear(expected, tiny_model.head.weight, tiny_model.head.fc.bias))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_extract_features_on_cuda_matches_cpu_within_bf16(tiny_model):
    images = np.random.default_rng(1).integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    cpu = extract_features(tiny_model, images, batch_size=8)
    gpu_model = build_model(ModelConfig(backbone="tiny"), num_classes=4).cuda()
    gpu_model.load_state_dict(tiny_model.state_dict())
    gpu = extract_features(gpu_model.to(memory_format=torch.channels_last), images, batch_size=8)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=3e-2, atol=3e-2)


def test_conv4_2pool_is_conv4_without_its_last_two_pools():
    coarse, fine = build_backbone("conv4").eval(), build_backbone("conv4-2pool").eval()
    fine.load_state_dict(coarse.state_dict())  # same parameters: only the pooling differs
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        f = fine(x)
        assert f.shape == (2, 64, 8, 8)
        # Oracle: the fine net with 2x2 max-pools re-inserted after blocks 3 and 4 is conv4.
        h = fine.layers[1](fine.layers[0](x))
        h = F.max_pool2d(fine.layers[2](h), 2)
        h = F.max_pool2d(fine.layers[3](h), 2)
        torch.testing.assert_close(h, coarse(x))
