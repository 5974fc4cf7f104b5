"""The gpu-marked tests (issue 20, stage a of scripts/gpu-check.sh): the CUDA paths, end to end
through the CLI at tiny size, each against a CPU fp32 oracle where one exists
(:mod:`fewshot_cam.bench.cuda_checks`). Skipped without CUDA; ``FEWSHOT_CAM_GPU_TEST_DEVICE=cpu``
runs them on the CPU (the GPU check's dry run does), where the oracle comparisons hold trivially.
"""

from __future__ import annotations

import os

import pytest
import torch

from fewshot_cam.bench import cuda_checks as checks

DEVICE = os.environ.get("FEWSHOT_CAM_GPU_TEST_DEVICE", "cuda")
CUDA = DEVICE.startswith("cuda")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(CUDA and not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny bf16 + channels-last pretraining per loss, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("gpu-runs")
    return {loss: checks.pretrain(tmp / loss, DEVICE, loss) for loss in checks.CONFIGS}


@pytest.mark.parametrize("loss", sorted(checks.CONFIGS))
def test_training_loss_on_device_matches_cpu_fp32(loss):
    checks.check_step_matches_cpu(DEVICE, loss)


@pytest.mark.parametrize("loss", sorted(checks.CONFIGS))
def test_pretrain_cli_bf16_channels_last(runs, loss):
    assert (runs[loss] / "last.pt").exists() and (runs[loss] / "best.pt").exists()


def test_resume_matches_uninterrupted_run(tmp_path):
    checks.check_resume(tmp_path, DEVICE)


def test_eval_on_device_matches_cpu(tmp_path, runs):
    checks.check_eval(tmp_path, DEVICE, runs["ce"])


@pytest.mark.parametrize("method", list(checks.CAM_METHODS))
def test_cam_every_method(tmp_path, runs, method):
    checks.check_cam(tmp_path, DEVICE, runs["camloss"], method)


def test_ablate_original_condition_is_eval(tmp_path, runs):
    checks.check_ablate(tmp_path, DEVICE, runs["ce"])


@pytest.mark.skipif(not CUDA or not torch.distributed.is_nccl_available(), reason="NCCL needs CUDA")
def test_torchrun_nccl_world_size_1(tmp_path):
    checks.check_torchrun(tmp_path)
