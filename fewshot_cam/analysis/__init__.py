"""Analysis: the CAM family (CAM, Grad-CAM, Grad-CAM++, Score-CAM) for our models, ProtoNet episodes and
foreign models (through the ``capture_activations`` hook context manager), background ablation and
localisation."""

from fewshot_cam.analysis.ablation import Swaps, run_ablation
from fewshot_cam.analysis.attribution import (
    METHODS,
    Scorer,
    attribute,
    attribute_images,
    classifier_scorer,
    episode_scorer,
    foreign_scorer,
    support_prototypes,
)
from fewshot_cam.analysis.conditions import CONDITIONS
from fewshot_cam.analysis.fills import FILLS, apply_fill
from fewshot_cam.analysis.hooks import capture_activations
from fewshot_cam.analysis.localization import Localization, box_iou, mask_iou

__all__ = [
    "CONDITIONS", "FILLS", "Localization", "METHODS", "Scorer", "Swaps", "apply_fill", "attribute", "attribute_images",
    "box_iou", "capture_activations", "classifier_scorer", "episode_scorer", "foreign_scorer", "mask_iou",
    "run_ablation", "support_prototypes",
]
