"""Any timm model as a backbone (optional extra ``timm``): ``--backbone timm:NAME``.

timm (Wightman, "PyTorch Image Models", github.com/huggingface/pytorch-image-models) builds the model
with ``features_only=True``: its stages' feature maps (B, C_i, h_i, w_i) in the NCHW layout, ViTs
included (timm reshapes their patch tokens into a map). ``forward`` is the last stage's map, the
contract of :mod:`fewshot_cam.models.backbones`; ``forward_stages`` every stage's, what SAOL's
decoder reads. Nothing is ever downloaded: ``pretrained=False`` always; weights the user already has
come from ``model.weights`` (a state dict saved by timm or torch, ``.pth`` / ``.pt`` / ``.safetensors``;
the classifier's keys are ignored). Where we differ from timm's own classifier: the head is ours
(linear, cosine or SAOL) over the last map, and there is no timm pooling or pre-logits layer.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from fewshot_cam.errors import UserError

PREFIX = "timm:"


def _timm():
    try:
        import timm
    except ImportError:
        raise UserError("timm backbones need the optional extra: pip install 'fewshot-cam[timm]'") from None
    return timm


class TimmBackbone(nn.Module):
    """timm model ``name`` as a feature extractor: (B, 3, H, W) -> (B, C, h, w) (its last stage)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        timm = _timm()
        if name not in timm.list_models():
            raise UserError(f"unknown timm model '{name}' (see timm.list_models(); e.g. resnet18, test_resnet)")
        try:  # ViTs take any input size with dynamic_img_size; CNNs take no such argument
            self.model = timm.create_model(name, pretrained=False, features_only=True, dynamic_img_size=True)
        except TypeError:
            self.model = timm.create_model(name, pretrained=False, features_only=True)
        except RuntimeError as err:
            raise UserError(f"timm model '{name}' has no feature-map interface ({err})") from None
        self.stage_channels = tuple(self.model.feature_info.channels())
        self.out_channels = self.stage_channels[-1]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) -> every stage's map [(B, C_i, h_i, w_i)]."""
        return list(self.model(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]  # (B, C, h, w)

    def load_weights(self, path: str | Path) -> None:
        """Load a timm / torch state dict from ``path`` (keys of the full model; its classifier ignored)."""
        state = read_state_dict(path)
        own = self.model.state_dict()
        found = {}
        for key in own:
            for candidate in (key, key.removeprefix("model.")):
                if candidate in state:
                    found[key] = state[candidate]
                    break
        missing = [k for k in own if k not in found]
        if missing:
            raise UserError(f"model.weights lacks '{missing[0]}' ({len(missing)} of {len(own)} tensors missing)", path)
        try:
            self.model.load_state_dict(found)
        except RuntimeError as err:
            raise UserError(f"model.weights do not fit: {' '.join(str(err).split())[:200]}", path) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch file (bare, or under "state_dict" / "model")."""
    path = Path(path)
    if not path.is_file():
        raise UserError("model.weights: no such file", path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"model.weights: cannot read ({type(err).__name__})", path) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError("model.weights: not a state dict", path)
    return state
