"""3D ResNets on face clips: torchvision's R3D-18, and 50/101-layer bottleneck versions built
from torchvision's own video ResNet parts (3x3x3 kernels throughout)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video import resnet as video_resnet

BOTTLENECK_LAYERS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


class R3D(nn.Module):
    """Input: frames (B, L, 3, H, W); logits (B, 2)."""

    def __init__(self, depth: int):
        super().__init__()
        if depth == 18:
            self.net = video_resnet.r3d_18(weights=None, num_classes=2)
        else:
            self.net = video_resnet.VideoResNet(
                video_resnet.Bottleneck, [video_resnet.Conv3DSimple] * 4, BOTTLENECK_LAYERS[depth],
                video_resnet.BasicStem, num_classes=2,
            )

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.net(frames.transpose(1, 2))}
