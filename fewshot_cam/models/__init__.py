"""Models: backbones returning spatial feature maps, heads, the classifier, CAM maths and checkpoints."""

from fewshot_cam.models.backbones import BACKBONES, build_backbone
from fewshot_cam.models.cam import caam, class_activation_maps, minmax_normalize, target_cam
from fewshot_cam.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from fewshot_cam.models.classifier import FewShotClassifier, LinearHead
from fewshot_cam.models.factory import HEADS, ModelConfig, build_model
from fewshot_cam.models.features import extract_feature_maps, extract_features

__all__ = [
    "BACKBONES", "HEADS", "FewShotClassifier", "LinearHead", "ModelConfig", "build_backbone", "build_model",
    "caam", "class_activation_maps", "extract_feature_maps", "extract_features", "load_checkpoint", "load_model",
    "minmax_normalize", "save_checkpoint", "target_cam",
]
