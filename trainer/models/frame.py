"""Per-image classifiers: an ImageNet trunk and a linear head (frame_cnn, resnet50, xception),
and the per-frame two-stream net that adds the frame's flow."""

from __future__ import annotations

import torch
from torch import nn

from trainer.models.backbones import RESNET50_FEATURES, flow_convnet, resnet50_trunk
from trainer.models.video import PER_FRAME, flattened_flow_features


def _logits(head: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    logits = head(features)
    return logits.squeeze(-1) if head.out_features == 1 else logits


class ImageClassifier(nn.Module):
    """Input: frames (N, 3, H, W); logits (N,) with one output, (N, 2) with two."""

    def __init__(self, trunk: nn.Module, features: int, outputs: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(features, outputs)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": _logits(self.head, self.trunk(frames))}


class TwoStreamFrame(nn.Module):
    """Input: frames (N, 3, H, W) and each frame's flow (N, 2, H, W) of `size`; logits (N,).
    The flow goes through the temporal stream of `TwoStreamVideo` (conv map flattened whole,
    linear 128), concatenated with the frame's ResNet-50 features."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.trunk = resnet50_trunk()
        self.flow_net = nn.Sequential(flow_convnet(), nn.Flatten(), nn.Linear(flattened_flow_features(size), PER_FRAME), nn.ReLU(inplace=True))
        self.head = nn.Linear(RESNET50_FEATURES + PER_FRAME, 1)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": _logits(self.head, torch.cat([self.trunk(frames), self.flow_net(flow)], dim=1))}
