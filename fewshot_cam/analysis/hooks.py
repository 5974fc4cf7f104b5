"""Forward-hook capture of one layer's activations, for foreign models only.

Our own models expose ``forward_features`` and every map is computed in the autograd graph from it;
a model from elsewhere (a torchvision ResNet, say) only offers ``model(x) -> logits``, so the layer's
output is recorded with a forward hook that the context manager always removes on exit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn


@contextmanager
def capture_activations(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record ``layer``'s output, still in the autograd graph, on every forward pass inside the block.

    Yields the list the outputs are appended to. An output that does not require grad (frozen
    weights) is replaced by a leaf that does, so gradients of the logits with respect to it exist.
    The hook is removed when the block exits, also on an exception.
    """
    store: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and not output.requires_grad:
            output = output.detach().requires_grad_()
        store.append(output)
        return output

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()
