"""Residual backbones returning spatial maps: ResNet-12 (with optional DropBlock) and ResNet-18.

ResNet-12 follows Lee et al. (MetaOptNet, CVPR 2019), as shipped by learn2learn
(``learn2learn.vision.models.ResNet12Backbone``): four residual blocks of three 3x3 convs, LeakyReLU(0.1),
a 1x1-conv shortcut and a 2x2 max-pool each; widths 64-160-320-640, (B, 3, 84, 84) -> (B, 640, 5, 5).
The module and parameter names match learn2learn's, so its state dicts load here (the tests check
outputs equal). It is written out rather than imported because learn2learn's forward always flattens
the map, its widths are fixed, and its DropBlock keeps its schedule in a Python int that counts
evaluation batches, is lost on checkpoint reload, and samples masks on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al., NeurIPS 2018): zero ``block_size`` x ``block_size`` squares of each map.

    Block centres are drawn with rate gamma = p / bs^2 * h w / ((h - bs + 1)(w - bs + 1)), the kept
    activations rescaled by numel / kept. The drop rate p ramps linearly from 0 to ``drop_rate`` over
    ``ramp_steps`` training batches (as in MetaOptNet); the step count is a buffer, so checkpoints keep it.
    Identity in eval mode. Randomness comes from torch's global generator, like ``nn.Dropout``.
    """

    def __init__(self, drop_rate: float, block_size: int, ramp_steps: int = 40000) -> None:
        super().__init__()
        self.drop_rate = drop_rate
        self.block_size = block_size
        self.ramp_steps = ramp_steps
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, h, w) -> same shape."""
        if not self.training or self.drop_rate <= 0:
            return x
        self.steps += 1
        p = self.drop_rate * (self.steps / max(self.ramp_steps, 1)).clamp(max=1.0)  # a tensor: no host sync
        h, w = x.shape[-2:]
        bs = min(self.block_size, h, w)
        gamma = p / bs**2 * h * w / ((h - bs + 1) * (w - bs + 1))
        centres = torch.rand(x.shape[0], x.shape[1], h - bs + 1, w - bs + 1, device=x.device) < gamma
        # a centre drawn at (i, j) drops [i, i + bs) x [j, j + bs), as learn2learn and MetaOptNet do
        padded = F.pad(centres.float(), (bs - 1,) * 4)  # (B, C, h + bs - 1, w + bs - 1)
        dropped = F.max_pool2d(padded, kernel_size=bs, stride=1)  # (B, C, h, w): 1 inside a block
        keep = 1.0 - dropped
        return x * (keep * (keep.numel() / keep.sum().clamp_min(1.0))).to(x.dtype)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Three 3x3 conv-BN(-LeakyReLU) layers + 1x1-conv shortcut, LeakyReLU, 2x2 max-pool, then
    plain dropout (``block_size`` 1) or DropBlock when ``drop_rate`` > 0."""

    def __init__(self, in_channels: int, channels: int, drop_rate: float = 0.0, block_size: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, channels), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = conv3x3(channels, channels), nn.BatchNorm2d(channels)
        self.conv3, self.bn3 = conv3x3(channels, channels), nn.BatchNorm2d(channels)
        self.relu = nn.LeakyReLU(0.1)
        self.maxpool = nn.MaxPool2d(2)
        self.downsample = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels)
        )
        if drop_rate > 0 and block_size > 1:
            self.drop: nn.Module = DropBlock(drop_rate, block_size)
        else:
            self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, h, w) -> (B, C, h / 2, w / 2)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(out + self.downsample(x))
        return self.drop(self.maxpool(out))


class ResNet12(nn.Module):
    """ResNet-12 (Mishra et al. 2018; Lee et al. 2019): 4 blocks, each halving h and w.

    ``drop_block`` applies MetaOptNet's regularisation: DropBlock (rate ``drop_rate``, size
    ``block_size``) after blocks 3 and 4, plain dropout with the same rate after blocks 1 and 2.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (64, 160, 320, 640),
        drop_block: bool = False,
        drop_rate: float = 0.1,
        block_size: int = 5,
    ) -> None:
        super().__init__()
        rate = drop_rate if drop_block else 0.0
        ins = (3, *widths[:-1])
        for i, (c_in, c_out) in enumerate(zip(ins, widths), start=1):
            size = block_size if i > 2 else 1
            self.add_module(f"layer{i}", nn.Sequential(BasicBlock(c_in, c_out, rate, size)))
        self.out_channels = widths[-1]
        self.stage_channels = tuple(widths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> (B, widths[-1], H / 16, W / 16)."""
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) -> the four block outputs, (B, widths[i], H / 2**(i+1), W / 2**(i+1))."""
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(x)
        return stages


class ResNet18(nn.Module):
    """torchvision's ResNet-18 (He et al., CVPR 2016), random init, without avgpool and fc.

    (B, 3, 84, 84) -> (B, 512, 3, 3); (B, 3, 224, 224) -> (B, 512, 7, 7).
    """

    def __init__(self) -> None:
        super().__init__()
        net = torchvision.models.resnet18(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = 512
        self.stage_channels = (64, 128, 256, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> (B, 512, H / 32, W / 32) (ceil per stride-2 stage)."""
        return self.layers(self.stem(x))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) -> the outputs of layer1 .. layer4 (64, 128, 256, 512 channels)."""
        x = self.stem(x)
        stages = []
        for layer in self.layers:
            x = layer(x)
            stages.append(x)
        return stages
