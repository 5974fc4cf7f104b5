"""Average Drop / Increase in Confidence against pytorch-grad-cam's metrics, deletion / insertion
against a plain per-image, per-step loop in numpy (the RISE procedure written out)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from scipy.ndimage import gaussian_filter
from scipy.signal import convolve2d
from test_attribution import model  # noqa: F401  (the tiny model with non-trivial BatchNorm statistics)

from fewshot_cam.analysis.attribution import attribute, classifier_scorer
from fewshot_cam.analysis.faithfulness import Faithfulness, auc, confidence_change, perturbation_curves, rise_blur


@pytest.fixture(scope="module")
def batch(model):
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 3, 4, 1, 2, 0])
    maps = attribute("gradcam", classifier_scorer(model), x, target)  # (6, 12, 12) in [0, 1]
    maps = maps + 1e-4 * torch.rand(maps.shape, generator=torch.Generator().manual_seed(2))  # no ties
    return x, maps / maps.max(), target


def test_average_drop_and_increase_match_pytorch_grad_cam(model, batch):
    x, maps, target = batch
    drop, increase = confidence_change(model, x, maps, target, batch_size=4)
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    cams = maps.numpy()
    with torch.no_grad():
        y = np.array([float(t(o)) for t, o in zip(targets, model(x))])
    ref_drop = DropInConfidence()(x, cams, targets, model) / y  # max(0, Y - O) / Y
    ref_increase = IncreaseInConfidence()(x, cams, targets, model)  # [O > Y]
    assert drop.numpy() == pytest.approx(ref_drop, rel=1e-4, abs=1e-6)
    assert increase.numpy() == pytest.approx(ref_increase)
    assert 0 < ref_drop.mean() and ref_drop.std() > 0  # the case can tell a wrong formula apart


def oracle_curve(model, image: np.ndarray, saliency: np.ndarray, target: int, kind: str, steps: int) -> np.ndarray:
    """RISE's loop: one image, step pixels at a time, most salient first."""
    c, h, w = image.shape
    step = -(-h * w // steps)
    order = np.argsort(-saliency.ravel(), kind="stable")
    if kind == "deletion":
        current, finish = image.copy(), np.zeros_like(image)
    else:
        kernel = gaussian_filter(np.pad(np.ones((1, 1)), 5), 5.0)  # 11 x 11 delta, blurred
        current, finish = np.stack([convolve2d(ch, kernel, mode="same") for ch in image]), image.copy()
    probs = []
    for i in range(-(-h * w // step) + 1):
        with torch.no_grad():
            logits = model(torch.from_numpy(current[None]).float())[0]
        probs.append(float(torch.softmax(logits, 0)[target]))
        ys, xs = np.unravel_index(order[step * i : step * (i + 1)], (h, w))
        current[:, ys, xs] = finish[:, ys, xs]
    return np.array(probs)


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
@pytest.mark.parametrize("steps", [16, 10])  # 10 does not divide 144 pixels: the last step is short
def test_curves_match_a_plain_loop(model, batch, kind, steps):
    x, maps, target = batch
    curves = perturbation_curves(model, x, maps, target, kind, steps=steps, batch_size=7)
    for i in range(len(x)):
        expected = oracle_curve(model, x[i].numpy().astype(np.float64), maps[i].numpy(), int(target[i]), kind, steps)
        assert curves[i].numpy() == pytest.approx(expected, abs=1e-5)
    assert curves[:, 0].std() > 0


def test_rise_blur_and_auc_closed_forms():
    x = torch.zeros(1, 1, 11, 11)
    x[0, 0, 5, 5] = 1.0
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    assert rise_blur(x)[0, 0].numpy() == pytest.approx(gaussian_filter(delta, 5.0)[::-1, ::-1], abs=1e-7)
    # trapezoids on [0, 1]: a line from 1 to 0 has area 1/2; a constant c has area c
    assert auc(torch.tensor([[1.0, 0.75, 0.5, 0.25, 0.0], [0.3] * 5])).tolist() == pytest.approx([0.5, 0.3])


def test_running_summary_over_batches(model, batch):
    x, maps, target = batch
    metric = Faithfulness(steps=8, batch_size=5)
    metric.update(model, x[:4], maps[:4], target[:4])
    metric.update(model, x[4:], maps[4:], target[4:])
    s = metric.summary()
    drop, increase = confidence_change(model, x, maps, target)
    deletion = auc(perturbation_curves(model, x, maps, target, "deletion", steps=8)).mean()
    assert s["n"] == 6 and s["average_drop"] == pytest.approx(100 * float(drop.mean()), rel=1e-5)
    assert s["increase_in_confidence"] == pytest.approx(100 * float(increase.mean()))
    assert s["deletion_auc"] == pytest.approx(float(deletion), rel=1e-5)


def test_mean_fill_differs_from_zeros(model, batch):
    x, maps, target = batch
    zeros = perturbation_curves(model, x, maps, target, "deletion", steps=4)
    mean = perturbation_curves(model, x, maps, target, "deletion", steps=4, deletion_fill="mean")
    assert torch.allclose(zeros[:, 0], mean[:, 0]) and not torch.allclose(zeros[:, -1], mean[:, -1])
    with pytest.raises(ValueError, match="deletion_fill"):
        Faithfulness(deletion_fill="blur")
