"""Attribution maps: which pixels drive the score of class c, for a classifier or a few-shot episode.

Every method explains a :class:`Scorer`, which turns an image batch into feature maps and class
scores computed from them, so one implementation serves the pretrained head (logits over the base
classes), a ProtoNet episode (logits -||f - c_n||^2 toward the prototypes) and foreign models (a
hooked layer). Methods return raw maps at feature resolution (B, h, w); :func:`attribute` upsamples
them bilinearly to the image and min-max normalises each to [0, 1].

``METHODS``: "cam" (Zhou et al. 2016), "gradcam" (Selvaraju et al. 2017), "gradcam++"
(Chattopadhay et al. 2018; pytorch-grad-cam's form of Eq. 19) and "gradcam++-official" (the authors'
code: per-channel alpha normalisation), "scorecam" (Wang et al. 2020; the authors' code: the normalised
input masked) and "scorecam-pytorch-grad-cam" (pytorch-grad-cam's: the [0, 1] image masked, channel softmax).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fewshot_cam.analysis.gradcam import gradcam, gradcam_plus_plus, target_or_top1
from fewshot_cam.analysis.hooks import capture_activations
from fewshot_cam.analysis.scorecam import scorecam
from fewshot_cam.data.transforms import to_float
from fewshot_cam.errors import UserError
from fewshot_cam.fewshot.protonet import protonet_logits, prototypes
from fewshot_cam.models.cam import minmax_normalize, target_cam
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.progress import progress as progress_bar
from fewshot_cam.registry import Registry


@dataclass(frozen=True)
class Scorer:
    """What a map explains.

    forward: x (B, 3, H, W) floats in [0, 1] -> (features (B, C, h, w), logits (B, K)), the logits
        computed from the features inside the autograd graph (when grad mode is on).
    class_weight: (K, C) weights whose product with the feature map is each class's CAM (the head
        weights, or the prototypes); None when the scores are not linear in the pooled features.
    class_maps: features (B, C, h, w) -> every class's map (B, K, h, w), when the model defines its
        own (``head.class_maps``: the CAM of a linear head, the spatial logits of a SAOL head); it
        takes precedence over ``class_weight`` in "cam".
    input_mean: (1, 3, 1, 1) the [0, 1] image that the model's own normalisation maps to zero (its
        mean): Score-CAM's "paper" variant masks the normalised input, i.e. fills removed pixels with
        it. None: the model reads its input as given (removed pixels are 0).
    """

    forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    class_weight: torch.Tensor | None = None
    class_maps: Callable[[torch.Tensor], torch.Tensor] | None = None
    input_mean: torch.Tensor | None = None


def _in_graph(features: torch.Tensor) -> torch.Tensor:
    """Features the logits can be differentiated against, even when the backbone is frozen."""
    if torch.is_grad_enabled() and not features.requires_grad:
        return features.detach().requires_grad_()
    return features


def classifier_scorer(model: FewShotClassifier) -> Scorer:
    """The pretrained head: logits over the base classes; class maps = ``head.class_maps`` (for a
    linear head the CAM of its (K, C) weight, for SAOL its spatial logits)."""

    if model.head_takes_stages:
        return _stage_head_scorer(model)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = _in_graph(model.forward_features(x))  # (B, C, h, w)
        return features, model.head(features)  # (B, K)

    return Scorer(forward, model.head.weight.detach(), model.head.class_maps, model.mean)


def _stage_head_scorer(model: FewShotClassifier) -> Scorer:
    """A head over every stage (SAOL): the maps explained are the last stage's; the earlier stages of
    the latest ``forward`` are kept for ``class_maps``."""
    earlier: list[torch.Tensor] = []

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stages = model.forward_stages(x)
        last = _in_graph(stages[-1])  # (B, C, h, w)
        earlier[:] = stages[:-1]
        return last, model.head([*stages[:-1], last])  # (B, K)

    def class_maps(features: torch.Tensor) -> torch.Tensor:
        return model.head.class_maps([*earlier, features])  # (B, K, h, w)

    return Scorer(forward, model.head.weight.detach(), class_maps, model.mean)


def episode_scorer(model: FewShotClassifier, protos: torch.Tensor, metric: str = "euclidean") -> Scorer:
    """A ProtoNet episode: logits of each image toward the N prototypes ``protos`` (N, C).

    Euclidean logits -|f - c|^2 = 2 f.c - |c|^2 - |f|^2 are linear in the pooled features f through c
    (plus a class-free term), so the prototype plays the part of the class weights in the CAM; for
    the cosine metric the class-dependent part is f.c / |c| (up to the class-free 1/|f|).
    With a flattened embedding (``pool`` "flatten") the prototype is a (C, h, w) map and class n's map
    is sum_k c_n[k, x, y] f_k(x, y) (the part of f.c_n at each location).
    """
    weight = protos if metric == "euclidean" else F.normalize(protos, dim=-1)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = _in_graph(model.forward_features(x))  # (B, C, h, w)
        pooled = model.forward_head(features, pre_logits=True)  # (B, C) or (B, C*h*w)
        return features, protonet_logits(pooled[None], protos[None], metric)[0]  # (B, N)

    if model.pool == "flatten":
        def class_maps(features: torch.Tensor) -> torch.Tensor:
            w = weight.detach().view(len(weight), *features.shape[1:])  # (N, C, h, w)
            return torch.einsum("bchw,nchw->bnhw", features.float(), w.float())  # (B, N, h, w)

        return Scorer(forward, None, class_maps, model.mean)
    return Scorer(forward, weight.detach(), None, model.mean)


def support_prototypes(model: FewShotClassifier, support: torch.Tensor) -> torch.Tensor:
    """support: (N, K, 3, H, W) floats in [0, 1] -> class prototypes (N, C), without gradients."""
    n, k = support.shape[:2]
    with torch.no_grad():
        embedded = model.embed(support.flatten(0, 1))  # (N*K, C)
    return prototypes(embedded.view(1, n, k, -1))[0]  # (N, C)


def foreign_scorer(model: nn.Module, layer: nn.Module) -> Scorer:
    """Any ``model(x) -> logits``, explained at ``layer``'s output (captured by a removable hook)."""

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with capture_activations(layer) as store:
            logits = model(x)
        return store[-1], logits

    return Scorer(forward)


def cam(scorer: Scorer, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016).

    M_c(x, y) = sum_k W[c, k] A_k(x, y): the in-graph ``models.cam.target_cam`` the CAM-loss uses; for
    a scorer with its own ``class_maps`` (a SAOL head: the spatial logits S_c) the map of class c.
    x: (B, 3, H, W), target: (B,) or None (each image's top-1 class from this same forward) -> (B, h, w).
    """
    if scorer.class_weight is None and scorer.class_maps is None:
        raise UserError("method 'cam' needs linear class weights; use gradcam, gradcam++ or scorecam for this model")
    with torch.no_grad():
        features, logits = scorer.forward(x)
        target = target_or_top1(target, logits)
        if scorer.class_maps is not None:
            return scorer.class_maps(features)[torch.arange(len(target), device=target.device), target]  # (B, h, w)
    return target_cam(features, scorer.class_weight, target)


# method(scorer, x (B, 3, H, W), target (B,), **options) -> raw maps (B, h, w)
METHODS: Registry[Callable[..., torch.Tensor]] = Registry("attribution method")
METHODS.register("cam", cam, help="CAM (Zhou et al. 2016)")
METHODS.register("gradcam", gradcam, help="Grad-CAM (Selvaraju et al. 2017)")
METHODS.register("gradcam++", gradcam_plus_plus, help="Grad-CAM++ (Chattopadhay et al. 2018), pytorch-grad-cam's alpha")
METHODS.register("gradcam++-official", partial(gradcam_plus_plus, variant="official"),
                 help="Grad-CAM++ with the authors' per-channel alpha normalisation")
METHODS.register("scorecam", scorecam, help="Score-CAM (Wang et al. 2020), masking the normalised input as the authors")
METHODS.register("scorecam-pytorch-grad-cam", partial(scorecam, variant="pytorch-grad-cam"),
                 help="Score-CAM as pytorch-grad-cam (softmax over channels of raw scores)")
BATCHED = frozenset({"scorecam", "scorecam-pytorch-grad-cam"})
"""Methods that run the model on many masked copies of each image, ``batch_size`` at a time."""


def upsample_normalize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """maps: (B, h, w) -> (B, H, W) in [0, 1]: bilinear upsampling (half-pixel centres), then min-max."""
    up = F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)
    return minmax_normalize(up[:, 0])


def top1(scorer: Scorer, x: torch.Tensor) -> torch.Tensor:
    """The highest-scoring class of each image. x: (B, 3, H, W) -> (B,) int64."""
    with torch.no_grad():
        return scorer.forward(x)[1].argmax(dim=1)


def attribute(
    method: str, scorer: Scorer, x: torch.Tensor, target: torch.Tensor | None = None, batch_size: int = 32, **options
) -> torch.Tensor:
    """Maps of ``method`` for class ``target`` (default: top-1, taken from the logits of the forward pass that
    builds the maps: one forward per batch). x: (B, 3, H, W) -> (B, H, W) in [0, 1].

    ``batch_size``: masked images per forward pass (methods in ``BATCHED``); ``options`` go to the
    method (Score-CAM: ``variant``).
    """
    explain = METHODS.get(method)
    target = None if target is None else target.to(x.device)
    if method in BATCHED:
        options["batch_size"] = batch_size
    return upsample_normalize(explain(scorer, x, target, **options), x.shape[-2:])


def attribute_images(
    method: str,
    scorer: Scorer,
    images: np.ndarray | torch.Tensor,
    device: torch.device,
    targets: torch.Tensor | None = None,
    batch_size: int = 64,
    progress: bool = False,
    **options,
) -> torch.Tensor:
    """Maps for a uint8 image set (N, H, W, 3), ``batch_size`` images at a time on ``device`` (the
    scorer's model's) -> (N, H, W) in [0, 1] on that device. ``targets``: (N,) classes, or None for
    top-1. ``batch_size`` also bounds Score-CAM's masked images per forward pass."""
    out = []
    for start in progress_bar(range(0, len(images), batch_size), desc=method, enabled=progress):
        x = to_float(images[start : start + batch_size], device)  # (b, 3, H, W)
        t = None if targets is None else targets[start : start + batch_size]
        out.append(attribute(method, scorer, x, t, batch_size=batch_size, **options))
    return torch.cat(out)
