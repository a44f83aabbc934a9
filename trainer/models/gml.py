"""Motion-consistency network: Xception whose depthwise convolutions become motion-consistency
blocks over the frames of a clip, and an anomaly branch that learns a clue map."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.models.xception import SeparableConv2d
from torch import nn

REDUCTION = 16
BRANCH_WIDTH, BRANCH_BLOCKS = 256, 9
# The clue map is pooled to the size it has at the paper's 224 px input, so the branch's
# linear classifier keeps its shape at any input size.
CLUE_GRID = 7


class MotionConsistency(nn.Module):
    """Stands in for a depthwise 3x3 convolution on (B*T, C, H, W), T frames a clip. Sums a
    spatio-temporal path (channel-wise 3x1x1 then 1x3x3), a motion path F_M(t) = F_D(t) -
    K(F_D(t-1)) on channels reduced 16x, and a consistency path F_MM(t) = F_M(t) - K(F_M(t-1))
    with the same channel-wise 3x3 K; the reduced paths are expanded back before the sum."""

    def __init__(self, channels: int, frames: int):
        super().__init__()
        reduced = max(1, channels // REDUCTION)
        self.frames = frames
        self.temporal = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0), groups=channels, bias=False)
        self.spatial = nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1), groups=channels, bias=False)
        self.reduce = nn.Conv3d(channels, reduced, 1, bias=False)
        self.kernel = nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
        self.expand_motion = nn.Conv3d(reduced, channels, 1, bias=False)
        self.expand_consistency = nn.Conv3d(reduced, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = x.shape
        clip = x.view(n // self.frames, self.frames, channels, height, width).transpose(1, 2)
        motion = self._difference(self.reduce(clip))
        consistency = self._difference(motion)
        out = self.spatial(self.temporal(clip)) + self.expand_motion(motion) + self.expand_consistency(consistency)
        return out.transpose(1, 2).reshape(n, channels, height, width)

    def _difference(self, features: torch.Tensor) -> torch.Tensor:
        """f(t) - K(f(t-1)) over (B, C, T, H, W); zero at t = 0, which has no previous frame."""
        batch, channels, frames, height, width = features.shape
        previous = features[:, :, :-1].transpose(1, 2).reshape(-1, channels, height, width)
        predicted = self.kernel(previous).view(batch, frames - 1, channels, height, width).transpose(1, 2)
        return torch.cat([torch.zeros_like(features[:, :, :1]), features[:, :, 1:] - predicted], dim=2)


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class MotionConsistencyNet(nn.Module):
    """Input: frames (B, T, 3, H, W). Output: `logits` (B, 2) of the backbone, `branch_logits`
    (B, 2) of the anomaly branch, and its clue map `clue` (B, 1, h, w), driven to zero for
    real clips by the loss."""

    def __init__(self, frames: int):
        super().__init__()
        self.backbone = timm.create_model("legacy_xception", pretrained=False, num_classes=0, global_pool="")
        for module in list(self.backbone.modules()):
            if isinstance(module, SeparableConv2d):
                module.conv1 = MotionConsistency(module.conv1.in_channels, frames)
        features = self.backbone.num_features
        self.classifier = nn.Linear(features, 2)
        self.branch = nn.Sequential(
            nn.Conv2d(features, BRANCH_WIDTH, 1, bias=False), nn.BatchNorm2d(BRANCH_WIDTH), nn.ReLU(inplace=True),
            *[_Residual(BRANCH_WIDTH) for _ in range(BRANCH_BLOCKS)],
            nn.Conv2d(BRANCH_WIDTH, 1, 1),
        )
        self.branch_classifier = nn.Linear(CLUE_GRID * CLUE_GRID, 2)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        batch, length = frames.shape[:2]
        features = self.backbone.forward_features(frames.flatten(0, 1))
        per_clip = features.view(batch, length, *features.shape[1:]).mean(dim=1)
        clue = self.branch(per_clip)
        grid = F.adaptive_avg_pool2d(clue, CLUE_GRID).flatten(1)
        return {"logits": self.classifier(per_clip.mean(dim=(2, 3))), "branch_logits": self.branch_classifier(grid), "clue": clue}
