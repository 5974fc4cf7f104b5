"""Which class a localisation map explains: the image's own class, on novel and on base classes.

A pretrained head only knows the base classes, so on a novel-class (val / test) image its top-1
class is some base class and never the image's class. ``TARGETS``:

* ``proto`` (novel classes): the image's class c through the prototype CAM of a ProtoNet episode.
  For every class among the sampled images, ``shots`` support images of that class that are *not*
  among the sampled images (drawn with the seed) give its prototype p_c; the scorer is
  :func:`.attribution.episode_scorer` over these prototypes (one |classes|-way episode), the target
  the image's class, so the CAM weights channels by p_c (Euclidean logits are linear in the pooled
  features through p_c) and faithfulness uses the episode's softmax over the classes.
* ``caam`` (either): the class-agnostic activation map sum_k A_k (Sun et al., "CAAM", the map CCM
  distils; :func:`fewshot_cam.models.cam.caam`), whatever ``--method``; faithfulness scores it
  against the image's class (the episode's on novel classes, the head's on base classes).
* ``gt`` (base classes: the checkpoint's own classes): the true class, "GT-known" localisation.
* ``top1``: the head's highest-scoring base class (fewshot-cam's earlier behaviour; on novel
  images this explains a base-class guess, named so in the output).

``default_target``: ``gt`` when the split's classes are the checkpoint's, else ``proto``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fewshot_cam.analysis.attribution import (
    Scorer,
    attribute_images,
    classifier_scorer,
    episode_scorer,
    support_prototypes,
    upsample_normalize,
)
from fewshot_cam.data.split import Split
from fewshot_cam.data.transforms import to_float
from fewshot_cam.errors import UserError
from fewshot_cam.models.cam import caam
from fewshot_cam.models.classifier import FewShotClassifier
from fewshot_cam.models.features import model_device
from fewshot_cam.registry import Registry

TARGETS: Registry[str] = Registry("CAM target")
for _name, _help in (("proto", "novel classes: the image's class through a prototype of other images of it"),
                     ("caam", "class-agnostic activation map (sum of channels), scored for the image's class"),
                     ("gt", "base classes: the true class (GT-known)"),
                     ("top1", "the head's top-1 base class")):
    TARGETS.register(_name, _help, help=_help)


@dataclass(frozen=True)
class Targeted:
    """A scorer, the class each image is explained for (None: top-1) and how to name it."""

    target: str
    description: str
    scorer: Scorer
    classes: torch.Tensor | None


def is_base_split(split: Split, ckpt: dict) -> bool:
    """Whether ``split``'s classes are the checkpoint's head classes (same names, same order)."""
    names = ckpt.get("class_names")
    return names is not None and tuple(names) == tuple(split.class_names)


def default_target(split: Split, ckpt: dict) -> str:
    return "gt" if is_base_split(split, ckpt) else "proto"


def support_rows(split: Split, rows: np.ndarray, classes: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """(len(classes), shots) image indices per class, none of them in ``rows``; UserError when short."""
    taken = set(rows.tolist())
    rng = np.random.default_rng(seed + 1)
    out = []
    for c in classes:  # a selection of images, not class maths
        pool = np.array([i for i in split.class_indices()[c] if i not in taken], dtype=np.int64)
        if len(pool) < shots:
            raise UserError(
                f"class '{split.class_names[c]}' has {len(pool)} images outside the {len(rows)} sampled, "
                f"fewer than --support-shots {shots}; lower --n or --support-shots",
                split.source or split.name,
            )
        out.append(rng.choice(pool, size=shots, replace=False))
    return np.stack(out)


def prototype_target(model: FewShotClassifier, split: Split, rows: np.ndarray, shots: int, seed: int) -> Targeted:
    """The ``proto`` target: one episode over the classes of the sampled images."""
    classes, index = np.unique(split.labels[rows], return_inverse=True)  # (N,), (len(rows),)
    support = support_rows(split, rows, classes, shots, seed)  # (N, K)
    images = to_float(split.images[support.ravel()], model_device(model))  # (N*K, 3, H, W)
    protos = support_prototypes(model, images.view(len(classes), shots, *images.shape[1:]))  # (N, C)
    text = f"image's class via its prototype ({len(classes)}-way episode, {shots} support images per class)"
    return Targeted("proto", text, episode_scorer(model, protos), torch.as_tensor(index, device=protos.device))


def build_target(target: str, model: FewShotClassifier, ckpt: dict, split: Split, rows: np.ndarray,
                 shots: int = 5, seed: int = 0) -> Targeted:
    """The scorer and classes for ``target`` (see the module docstring) on the images ``rows``."""
    TARGETS.get(target)
    base = is_base_split(split, ckpt)
    device = model_device(model)
    if target == "gt" or (target == "caam" and base):
        if not base:
            raise UserError(f"--target gt needs the checkpoint's own (base) classes; {split.name} holds other "
                            f"classes: use --target proto", split.source or split.name)
        labels = torch.as_tensor(split.labels[rows], device=device)
        text = "true base class (GT-known)" if target == "gt" else "class-agnostic map; scored for the true base class"
        return Targeted(target, text, classifier_scorer(model), labels)
    if target == "top1":
        text = "top-1 base class" + ("" if base else " (novel images: a base-class guess, not the image's class)")
        return Targeted("top1", text, classifier_scorer(model), None)
    found = prototype_target(model, split, rows, shots, seed)
    return found if target == "proto" else Targeted("caam", f"class-agnostic map; scored for the {found.description}",
                                                    found.scorer, found.classes)


def targeted_maps(method: str, spec: Targeted, images: np.ndarray, device: torch.device, batch_size: int = 64,
                  progress: bool = False) -> torch.Tensor:
    """(N, H, W) maps in [0, 1] on ``device`` for ``spec`` (CAAM ignores ``method``). images: (N, H, W, 3) uint8."""
    if spec.target != "caam":
        return attribute_images(method, spec.scorer, images, device, spec.classes, batch_size, progress)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_float(images[start : start + batch_size], device)  # (b, 3, H, W)
            out.append(upsample_normalize(caam(spec.scorer.forward(x)[0]), x.shape[-2:]))
    return torch.cat(out)
