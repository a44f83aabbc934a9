"""Optical-flow CNN-LSTM: colour-coded flow images through an ImageNet trunk, then two LSTMs;
and the same paper's OF+CNN row, without the LSTMs."""

from __future__ import annotations

import torch
from torch import nn

from trainer.models.backbones import trunk

HIDDEN = 512


class FlowLSTM(nn.Module):
    """Input: HSV-coded flow (B, F, 3, H, W); logits (B, 2) from the last LSTM step, or with
    `lstm=False` from the flow images' features averaged over the sequence."""

    def __init__(self, backbone: str = "resnet50", lstm: bool = True):
        super().__init__()
        self.backbone, features = trunk(backbone)
        self.lstm = nn.LSTM(features, HIDDEN, num_layers=2, dropout=0.5, batch_first=True) if lstm else None
        self.classifier = nn.Linear(HIDDEN if lstm else features, 2)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(flow.flatten(0, 1)).view(*flow.shape[:2], -1)
        if self.lstm is None:
            return {"logits": self.classifier(features.mean(dim=1))}
        steps, _ = self.lstm(features)
        return {"logits": self.classifier(steps[:, -1])}
