"""Training: supervised pretraining and episodic meta-training through one epoch runner."""

from fewshot_cam.training.runner import epoch_seed, run_epoch, run_epochs

__all__ = ["epoch_seed", "run_epoch", "run_epochs"]
