"""Pretraining recipes for ``fewshot-cam study``: a base layer of settings each run of a study starts
from (the study then trains it with ``loss: ce`` and with ``loss: camloss``).

A recipe is a nested mapping of :class:`~fewshot_cam.training.config.PretrainConfig` keys; the study's
flags (dataset, root, backbone, image size, epochs) and ``--pretrain-set`` override it.
"""

from __future__ import annotations

from fewshot_cam.registry import Registry
from fewshot_cam.training.config import QUICKSTART

RECIPES: Registry[dict] = Registry("recipe")

RECIPES.register("camloss", {k: v for k, v in QUICKSTART.items() if k not in ("data", "optim", "loss")} | {
    "loss": {"alpha": 1.0, "warmup_epochs": 5, "distance": "l1"},
    "optim": {"epochs": 30, "batch_size": 64, "lr": 0.05, "weight_decay": 5.0e-4, "schedule": "cosine"},
    "val": {"every": 5, "ways": 5, "shots": 1, "queries": 15, "episodes": 300},
}, help="this project's CE vs CE + CAM-loss recipe (Wang et al. 2021; configs/synthetic-conv4-camloss.yaml)")

RECIPES.register("rfs", {
    "model": {"drop_block": True, "normalization": "rfs"},
    "loss": {"loss": "ce"},
    "augment": {"crop": "pad", "padding": 8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4,
                "jitter_order": "random", "hflip": 0.5},
    "optim": {"epochs": 100, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4,
              "schedule": "multistep", "milestones": [60, 80], "gamma": 0.1},
    "val": {"every": 10, "ways": 5, "shots": 1, "queries": 15, "episodes": 600},
    "train": {"select": "last"},
}, help="RFS-simple (Tian et al., ECCV 2020): SGD 100 epochs, decay at 60/80, RFS augmentation, the final model "
        "(configs/mini-imagenet-resnet12-rfs.yaml)")
