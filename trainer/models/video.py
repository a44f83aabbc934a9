"""Whole-video detectors of the spatial/temporal family: two-stream per video and CNN-RNN."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainer.models.backbones import FLOW_MAP_CHANNELS, RESNET50_FEATURES, flow_convnet, flow_map_size, resnet50_trunk

PER_FRAME, PER_VIDEO, HIDDEN = 128, 512, 512


def flattened_flow_features(size: tuple[int, int]) -> int:
    """Values of the temporal stream's flattened map: 73,600 for the paper's 108x192 flow."""
    return FLOW_MAP_CHANNELS * math.prod(flow_map_size(size))


class TwoStreamVideo(nn.Module):
    """Input: frames (B, L, 3, H, W) and one flow per frame (B, L, 2, H, W) of `size`; logits
    (B,). Appearance: ResNet-50 per frame, linear 128, the L stacked, linear 512. Motion: the
    flow net's (64, h, w) map per flow flattened whole (its spatial layout kept), linear 128,
    stacked, linear 512. Both concatenated, linear to the score."""

    def __init__(self, frames_per_video: int, size: tuple[int, int]):
        super().__init__()
        self.trunk = resnet50_trunk()
        self.flow_net = flow_convnet()
        self.frame_stream = self._stream(RESNET50_FEATURES, frames_per_video)
        self.flow_stream = self._stream(flattened_flow_features(size), frames_per_video)
        self.head = nn.Linear(2 * PER_VIDEO, 1)

    @staticmethod
    def _stream(features: int, frames_per_video: int) -> nn.Sequential:
        # ReLUs between the linear layers: without them the two would collapse into one.
        return nn.Sequential(
            nn.Linear(features, PER_FRAME), nn.ReLU(inplace=True), nn.Flatten(),
            nn.Linear(frames_per_video * PER_FRAME, PER_VIDEO), nn.ReLU(inplace=True),
        )

    def forward(self, frames: torch.Tensor, flow: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, length = frames.shape[:2]
        appearance = self.frame_stream(self.trunk(frames.flatten(0, 1)).view(batch, length, -1))
        motion = self.flow_stream(self.flow_net(flow.flatten(0, 1)).view(batch, length, -1))
        return {"logits": self.head(torch.cat([appearance, motion], dim=1)).squeeze(-1)}


class CNNRNN(nn.Module):
    """Input: frames (B, L, 3, H, W); ResNet-50 features per frame through an LSTM; logits (B,)."""

    def __init__(self):
        super().__init__()
        self.trunk = resnet50_trunk()
        self.lstm = nn.LSTM(RESNET50_FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        features = self.trunk(frames.flatten(0, 1)).view(*frames.shape[:2], -1)
        steps, _ = self.lstm(features)
        return {"logits": self.head(steps[:, -1]).squeeze(-1)}
