"""Argument helpers shared by the commands: the one place a device is chosen."""

from __future__ import annotations

import argparse

import torch

from fewshot_cam.errors import UserError


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")


def pick_device(name: str) -> torch.device:
    """Resolve ``--device``; the library itself never picks one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available")
    return device


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--dataset D --root R``: where images come from."""
    parser.add_argument("--dataset", required=required, help="mini-imagenet, tiered-imagenet, imagefolder or synthetic")
    parser.add_argument("--root", default=None, help="dataset root folder (not needed for synthetic)")
