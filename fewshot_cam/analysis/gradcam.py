"""Gradient-weighted class activation maps, computed in the autograd graph from a :class:`Scorer`.

Both methods weight the feature channels A_k by functions of the gradients d S_c / d A_k of the
class score S_c (the logit) and return ReLU(sum_k w_k A_k) at feature resolution (B, h, w).
"""

from __future__ import annotations

import torch

from fewshot_cam.errors import UserError


def target_or_top1(target: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """``target`` (B,), or where it is None each image's top-1 class from the ``logits`` (B, K) of the
    forward that builds the map (no second forward pass)."""
    return logits.detach().argmax(dim=1) if target is None else target.to(logits.device)


def activations_and_grads(scorer, x: torch.Tensor, target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A = features of x (B, C, h, w) and dS/dA of each image's target logit (B, C, h, w), both detached.
    ``target`` None: each image's top-1 class of this same forward.

    The scores of the images are summed before differentiating: image b's score depends only on its
    own features (models in eval mode), so each slice of the gradient is that image's own.
    """
    with torch.enable_grad():
        features, logits = scorer.forward(x)
        target = target_or_top1(target, logits)
        score = logits.gather(1, target.view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(score, features)
    return features.detach().float(), grads.float()


def _weighted_relu(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k w_k A_k). features: (B, C, h, w), weights: (B, C) -> (B, h, w)."""
    return torch.einsum("bchw,bc->bhw", features, weights).clamp_min(0)


def gradcam(scorer, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017).

    w_k = 1/(hw) sum_{x,y} dS_c/dA_k(x, y);  M_c = ReLU(sum_k w_k A_k).  x: (B, 3, H, W) -> (B, h, w).
    For a GAP + linear head, dS_c/dA_k = W[c, k] / (hw), so Grad-CAM = ReLU(CAM) / (hw).
    """
    features, grads = activations_and_grads(scorer, x, target)
    return _weighted_relu(features, grads.mean(dim=(2, 3)))


GRADCAM_PP_VARIANTS = ("pytorch-grad-cam", "official")


def gradcam_plus_plus(scorer, x: torch.Tensor, target: torch.Tensor | None, eps: float = 1e-6,
                      variant: str = "pytorch-grad-cam") -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
    Networks", WACV 2018), in the exp-score form (Eq. 19) where the higher derivatives are powers of g:

    alpha_k(x, y) = g^2 / (2 g^2 + sum_{x',y'} A_k(x', y') g^3),  g = dS_c/dA_k(x, y) (alpha = 0 where g = 0);
    w_k = sum_{x,y} alpha_k(x, y) ReLU(g);  M_c = ReLU(sum_k w_k A_k).  x: (B, 3, H, W) -> (B, h, w).

    ``variant`` "pytorch-grad-cam" (the default, the paper's Eq. 19 as pytorch-grad-cam computes it):
    ``eps`` added to the denominator. "official": the authors' code (adityac94/Grad_CAM_plus_plus)
    also normalises each channel's alphas, alpha_k / sum_{x,y: g > 0} alpha_k (a zero sum left at 1),
    and has no eps (a zero denominator becomes 1). Their exp(S_c) factors cancel in alpha and scale
    every w_k of an image alike, so they vanish in the normalised map and are left out.
    """
    if variant not in GRADCAM_PP_VARIANTS:
        raise UserError(f"unknown Grad-CAM++ variant '{variant}' (valid: {', '.join(GRADCAM_PP_VARIANTS)})")
    features, grads = activations_and_grads(scorer, x, target)
    g2 = grads.square()
    g3 = g2 * grads
    total = features.sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    if variant == "official":
        denom = 2 * g2 + total * g3
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        norm = torch.where(grads > 0, alpha, torch.zeros_like(alpha)).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        alpha = alpha / torch.where(norm != 0, norm, torch.ones_like(norm))
    else:
        alpha = g2 / (2 * g2 + total * g3 + eps)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grads.clamp_min(0)).sum(dim=(2, 3))  # (B, C)
    return _weighted_relu(features, weights)
