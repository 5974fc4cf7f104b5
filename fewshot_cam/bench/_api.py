"""Every package internal the GPU check uses, imported in this one place.

The package is being reshaped (few-shot maths moving to ``fewshot_cam/fewshot/``, a training runner);
when a path moves, fix it here and nowhere else in :mod:`fewshot_cam.bench`.
"""

from __future__ import annotations

from fewshot_cam.analysis.ablation import Swaps, compact, run_ablation
from fewshot_cam.analysis.attribution import METHODS as CAM_METHODS
from fewshot_cam.analysis.attribution import attribute_images, classifier_scorer
from fewshot_cam.analysis.conditions import CONDITIONS, choose_donors
from fewshot_cam.analysis.fills import FILLS
from fewshot_cam.cli import main as cli_main
from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.episodes import make_episodes
from fewshot_cam.data.split import Split
from fewshot_cam.data.synthetic import SynthConfig, generate_split
from fewshot_cam.data.transforms import to_float
from fewshot_cam.evaluation.results import read_result
from fewshot_cam.fewshot.episodic import evaluate_episodes, predict_episodes
from fewshot_cam.io import atomic_write, read_json, write_json
from fewshot_cam.losses.camloss import LossConfig
from fewshot_cam.models.checkpoint import load_model
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.models.features import extract_features, model_device
from fewshot_cam.registry import Registry
from fewshot_cam.training import pretrain as pretrain_module  # its train_one_epoch: check_resume interrupts it
from fewshot_cam.training.augment import AugmentConfig
from fewshot_cam.training.loop import train_step
from fewshot_cam.training.objectives import FeaturesAndHead, Objective, objective_loss
from fewshot_cam.training.optim import OptimConfig, build_optimizer, build_scheduler
from fewshot_cam.training.run_dir import read_metrics
from fewshot_cam.training.runner import autocast_for
from fewshot_cam.training.state import EpochInputs, make_batch

__all__ = [
    "CONDITIONS",
    "FILLS",
    "run_ablation",
    "Swaps",
    "compact",
    "choose_donors",
    "CAM_METHODS",
    "attribute_images",
    "classifier_scorer",
    "cli_main",
    "load_split",
    "load_model",
    "make_episodes",
    "Split",
    "SynthConfig",
    "generate_split",
    "to_float",
    "evaluate_episodes",
    "predict_episodes",
    "read_result",
    "atomic_write",
    "read_json",
    "write_json",
    "LossConfig",
    "ModelConfig",
    "build_model",
    "extract_features",
    "model_device",
    "Registry",
    "AugmentConfig",
    "EpochInputs",
    "autocast_for",
    "make_batch",
    "train_step",
    "FeaturesAndHead",
    "Objective",
    "objective_loss",
    "OptimConfig",
    "build_optimizer",
    "build_scheduler",
    "read_metrics",
    "pretrain_module",
]
