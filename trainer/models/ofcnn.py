"""Optical flow + CNN on face crops: Meso-4-shaped branches over every frame and every
group's stacked flows, one dense layer over their scores."""

from __future__ import annotations

import torch
from torch import nn

from trainer.models.meso import MesoNet


class OpticalFlowCNN(nn.Module):
    """Input: frames (B, G, L, 3, H, W) and flow (B, G, L-1, 2, H, W), G groups of L frames.
    One branch scores each frame, one each group's L-1 flows stacked to 2(L-1) channels;
    logits (B,) from the G*L + G branch scores."""

    def __init__(self, size: tuple[int, int], groups: int, frames_per_group: int):
        super().__init__()
        self.frame_branch = MesoNet(size, in_channels=3)
        self.flow_branch = MesoNet(size, in_channels=2 * (frames_per_group - 1))
        self.combine = nn.Linear(groups * frames_per_group + groups, 1)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = frames.shape[0]
        frame_scores = self.frame_branch(frames.flatten(0, 2))["logits"].view(batch, -1)
        flow_stacks = flow.flatten(2, 3).flatten(0, 1)  # (B*G, 2(L-1), H, W)
        flow_scores = self.flow_branch(flow_stacks)["logits"].view(batch, -1)
        return {"logits": self.combine(torch.cat([frame_scores, flow_scores], dim=1)).squeeze(-1)}
