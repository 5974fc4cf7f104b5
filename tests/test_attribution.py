"""Attribution maps against closed forms, plain loops and the grad-cam package (pytorch-grad-cam 1.5.7).

Tolerance: pytorch-grad-cam computes ReLU -> min-max -> cv2.resize (bilinear, half-pixel centres) ->
min-max again; ours is ReLU -> torch bilinear (align_corners=False, the same sampling grid) -> min-max.
Min-max commutes with bilinear interpolation (an affine map of a convex combination), so the two agree
up to float32 rounding and the different epsilons (1e-7 vs 1e-6) in the normalisation: atol 1e-4.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from fewshot_cam.analysis.attribution import (
    Scorer,
    attribute,
    attribute_images,
    classifier_scorer,
    episode_scorer,
    foreign_scorer,
    support_prototypes,
    upsample_normalize,
)
from fewshot_cam.analysis.gradcam import gradcam_plus_plus
from fewshot_cam.analysis.hooks import capture_activations
from fewshot_cam.analysis.scorecam import channel_masks, scorecam
from fewshot_cam.data.transforms import to_float
from fewshot_cam.errors import UserError
from fewshot_cam.fewshot.protonet import protonet_logits
from fewshot_cam.models.backbones import build_backbone
from fewshot_cam.models.classifier import FewShotClassifier, LinearHead

ATOL = 1e-4


@pytest.fixture(scope="module")
def model() -> FewShotClassifier:
    torch.manual_seed(0)
    m = FewShotClassifier(build_backbone("tiny"), LinearHead(16, 5))
    for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)):  # non-trivial eval statistics
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


TARGET = torch.tensor([0, 3, 4])


def package_maps(cls, model: nn.Module, layer: nn.Module, x: torch.Tensor, target=TARGET, **attrs) -> torch.Tensor:
    explainer = cls(model=model, target_layers=[layer])
    for name, value in attrs.items():
        setattr(explainer, name, value)
    with explainer:
        out = explainer(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in target])
    return torch.from_numpy(out)


def test_cam_is_the_closed_form_and_pools_to_the_logits(model, images):
    f = model.forward_features(images).detach()
    closed = torch.einsum("bchw,kc->bkhw", f, model.head.weight.detach())  # sum_k W_ck f_k
    logits = closed.mean(dim=(2, 3)) + model.head.fc.bias.detach()
    assert torch.allclose(logits, model(images).detach(), atol=1e-5)
    expected = upsample_normalize(closed[torch.arange(3), TARGET], (32, 32))
    got = attribute("cam", classifier_scorer(model), images, TARGET)
    assert torch.allclose(got, expected, atol=1e-6)
    assert got.shape == (3, 32, 32) and got.min() >= 0 and got.max() <= 1


def test_gradcam_equals_relu_cam_for_a_gap_linear_head(model, images):
    scorer = classifier_scorer(model)
    raw_cam = torch.einsum("bchw,bc->bhw", model.forward_features(images).detach(), model.head.weight.detach()[TARGET])
    expected = upsample_normalize(raw_cam.clamp_min(0), (32, 32))
    assert torch.allclose(attribute("gradcam", scorer, images, TARGET), expected, atol=1e-5)


@pytest.mark.parametrize("method, cls", [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)])
def test_gradient_methods_match_pytorch_grad_cam(model, images, method, cls):
    ours = attribute(method, classifier_scorer(model), images, TARGET)
    theirs = package_maps(cls, model, model.backbone, images)
    assert (ours - theirs).abs().max() < ATOL


def test_scorecam_matches_pytorch_grad_cam_variant(model, images):
    ours = attribute("scorecam", classifier_scorer(model), images, TARGET, batch_size=5, variant="pytorch-grad-cam")
    theirs = package_maps(ScoreCAM, model, model.backbone, images, batch_size=16)
    assert (ours - theirs).abs().max() < ATOL


def loop_scorecam_authors(model, images, fill_mean: bool) -> torch.Tensor:
    """The authors' code (haofanwang/Score-CAM), one image and one channel at a time: the upsampled,
    min-max normalised map multiplies the *normalised* input (``fill_mean``) or the [0, 1] image;
    softmax score of the target; score * upsampled map summed at input resolution; ReLU; min-max."""
    f = model.forward_features(images).detach()
    out = torch.zeros(3, 32, 32)
    with torch.no_grad():
        for b in range(3):
            normalised = (images[b : b + 1] - model.mean) / model.std
            for k in range(f.shape[1]):
                a = f[b, k]
                if a.max() == a.min():
                    continue
                up = F.interpolate(a[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
                mask = (up - up.min()) / (up.max() - up.min())
                if fill_mean:
                    logits = model.head(model.backbone(normalised * mask))
                else:
                    logits = model(images[b : b + 1] * mask)
                out[b] += logits.softmax(1)[0, TARGET[b]] * up
    out = out.clamp_min(0)
    lo, hi = out.flatten(1).amin(1)[:, None, None], out.flatten(1).amax(1)[:, None, None]
    return (out - lo) / (hi - lo)


def test_scorecam_paper_variant_is_the_authors_code(model, images):
    assert not torch.allclose(model.mean, torch.zeros(3).view(1, 3, 1, 1))  # normalisation is not the identity
    ours = attribute("scorecam", classifier_scorer(model), images, TARGET)
    assert torch.allclose(ours, loop_scorecam_authors(model, images, fill_mean=True), atol=1e-4)
    black = loop_scorecam_authors(model, images, fill_mean=False)  # masking the [0, 1] image instead
    assert (ours - black).abs().max() > 1e-3  # the inputs tell the two apart


def test_scorecam_pytorch_grad_cam_method_name(model, images):
    scorer = classifier_scorer(model)
    by_name = attribute("scorecam-pytorch-grad-cam", scorer, images, TARGET, batch_size=5)
    assert torch.allclose(by_name, attribute("scorecam", scorer, images, TARGET, variant="pytorch-grad-cam"))


def hand_scorer() -> Scorer:
    """Two channels on a 1 x 2 map: A_1 = (1, 3), A_2 = (2, 2); S = sum G * A with G_1 = (1, -2), G_2 = (1, 1),
    so dS/dA = G exactly."""
    A = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]])
    G = torch.tensor([[[[1.0, -2.0]], [[1.0, 1.0]]]])

    def forward(x):
        features = A.clone().requires_grad_(torch.is_grad_enabled())
        return features, (G * features).sum(dim=(1, 2, 3))[:, None]  # (1, 1)

    return Scorer(forward)


def test_gradcam_plus_plus_variants_on_a_hand_case():
    """Eq. 19: alpha = g^2 / (2 g^2 + sum(A) g^3) with sum(A) = 4 for both channels:
    channel 1: alpha = (1/6, -1/6), w_1 = 1/6 * 1 + 0 = 1/6; channel 2: alpha = (1/6, 1/6), w_2 = 1/3;
    map ReLU(w_1 A_1 + w_2 A_2) = (5/6, 7/6). Official: alphas / their sum where g > 0: channel 1
    (1, -1) -> w_1 = 1, channel 2 (1/2, 1/2) -> w_2 = 1; map (3, 5)."""
    x, t = torch.zeros(1, 3, 2, 2), torch.tensor([0])
    pgc = gradcam_plus_plus(hand_scorer(), x, t)
    official = gradcam_plus_plus(hand_scorer(), x, t, variant="official")
    assert torch.allclose(pgc, torch.tensor([[[5 / 6, 7 / 6]]]), atol=1e-5)
    assert torch.allclose(official, torch.tensor([[[3.0, 5.0]]]), atol=1e-6)
    with pytest.raises(UserError, match="Grad-CAM\\+\\+ variant 'x'"):
        gradcam_plus_plus(hand_scorer(), x, t, variant="x")


def test_scorecam_batches_are_bounded_and_do_not_change_the_map(model, images):
    seen = []
    base = classifier_scorer(model)

    def counting(x):
        seen.append(len(x))
        return base.forward(x)

    scorer = Scorer(counting, base.class_weight)
    maps = {bs: scorecam(scorer, images, TARGET, batch_size=bs) for bs in (1, 7, 64)}
    assert max(seen[1:]) <= 64 and seen.count(7) == 3 * 16 // 7
    assert torch.allclose(maps[1], maps[7], atol=1e-5) and torch.allclose(maps[1], maps[64], atol=1e-5)


class ProtoNetHead(nn.Module):
    """The episode as a plain model for the package: images -> ProtoNet logits."""

    def __init__(self, model: FewShotClassifier, protos: torch.Tensor) -> None:
        super().__init__()
        self.model, self.protos = model, protos

    def forward(self, x):
        return protonet_logits(self.model.embed(x)[None], self.protos[None])[0]


@pytest.fixture(scope="module")
def protos(model) -> torch.Tensor:
    support = torch.rand(4, 2, 3, 32, 32, generator=torch.Generator().manual_seed(2))  # (N, K, 3, H, W)
    return support_prototypes(model, support)


@pytest.mark.parametrize("method, cls", [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)])
def test_episode_maps_match_pytorch_grad_cam(model, images, protos, method, cls):
    target = torch.tensor([0, 1, 3])
    ours = attribute(method, episode_scorer(model, protos), images, target)
    theirs = package_maps(cls, ProtoNetHead(model, protos), model.backbone, images, target)
    assert (ours - theirs).abs().max() < ATOL


def test_episode_cam_weights_channels_by_the_prototype(model, images, protos):
    target = torch.tensor([2, 0, 1])
    f = model.forward_features(images).detach()
    expected = upsample_normalize((f * protos[target][:, :, None, None]).sum(1), (32, 32))
    assert torch.allclose(attribute("cam", episode_scorer(model, protos), images, target), expected, atol=1e-6)
    # the prototype is the class mean of the support embeddings
    logits = episode_scorer(model, protos).forward(images)[1]
    assert torch.allclose(logits, -torch.cdist(model.embed(images), protos).square(), atol=1e-3)


def test_foreign_model_through_a_hook_equals_the_in_graph_maps(model, images):
    foreign = nn.Sequential(model.backbone, nn.AdaptiveAvgPool2d(1), nn.Flatten(), model.head.fc)
    x = (images - model.mean) / model.std  # the foreign model has no normalisation inside
    for method in ("gradcam", "gradcam++"):
        ours = attribute(method, classifier_scorer(model), images, TARGET)
        hooked = attribute(method, foreign_scorer(foreign, model.backbone), x, TARGET)
        assert torch.allclose(ours, hooked, atol=1e-5)
    assert not model.backbone._forward_hooks
    with pytest.raises(UserError, match="linear class weights"):
        attribute("cam", foreign_scorer(foreign, model.backbone), x, TARGET)


def test_hook_is_removed_on_error(model, images):
    with pytest.raises(RuntimeError):
        with capture_activations(model.backbone) as store:
            model(images)
            raise RuntimeError("boom")
    assert len(store) == 1 and not model.backbone._forward_hooks


def test_default_target_is_top1_and_unknown_method_raises(model, images):
    scorer = classifier_scorer(model)
    top = model(images).argmax(1)
    assert torch.equal(attribute("gradcam", scorer, images), attribute("gradcam", scorer, images, top))
    with pytest.raises(UserError, match="choose from cam, gradcam"):
        attribute("lime", scorer, images)


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcam++"])
def test_top1_maps_take_one_forward_per_batch(model, images, method):
    """No extra forward to find the top-1 class: the forward that builds the maps gives it (a hook counts)."""
    calls = []
    uint8 = (images * 255).round().byte().permute(0, 2, 3, 1)  # (3, 32, 32, 3)
    with torch.no_grad():
        top = model(to_float(uint8, images.device)).argmax(1)
    handle = model.backbone.register_forward_hook(lambda *_: calls.append(1))
    try:
        maps = attribute_images(method, classifier_scorer(model), uint8, images.device, batch_size=2)
        per_batch = len(calls)
        calls.clear()
        explicit = attribute_images(method, classifier_scorer(model), uint8, images.device, targets=top, batch_size=2)
    finally:
        handle.remove()
    assert per_batch == -(-len(images) // 2), per_batch  # exactly one forward per batch of 2
    assert len(calls) == per_batch
    torch.testing.assert_close(maps, explicit)
    other = attribute_images(method, classifier_scorer(model), uint8, images.device, targets=(top + 1) % 5)
    assert not torch.allclose(maps, other), "the target must matter for the comparison to mean anything"


def test_channel_masks_are_normalised_and_dead_channels_vanish():
    maps = torch.stack([torch.arange(4.0).view(2, 2), torch.zeros(2, 2)])
    masks = channel_masks(maps, (4, 4), align_corners=True)
    assert masks[0, 0, 0] == 0 and abs(masks[0, -1, -1] - 1) < 1e-6 and masks[1].abs().max() == 0
