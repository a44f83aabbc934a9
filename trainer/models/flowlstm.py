"""Optical-flow CNN-LSTM: colour-coded flow images through an ImageNet trunk, then two LSTMs."""

from __future__ import annotations

import torch
from torch import nn

from trainer.models.backbones import RESNET50_FEATURES, resnet50_trunk

HIDDEN = 512


class FlowLSTM(nn.Module):
    """Input: HSV-coded flow (B, F, 3, H, W); logits (B, 2) from the last LSTM step."""

    def __init__(self):
        super().__init__()
        self.backbone = resnet50_trunk()
        self.lstm = nn.LSTM(RESNET50_FEATURES, HIDDEN, num_layers=2, dropout=0.5, batch_first=True)
        self.classifier = nn.Linear(HIDDEN, 2)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(flow.flatten(0, 1)).view(*flow.shape[:2], -1)
        steps, _ = self.lstm(features)
        return {"logits": self.classifier(steps[:, -1])}
