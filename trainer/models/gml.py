"""Motion-consistency network: Xception whose depthwise convolutions become motion-consistency
blocks over the frames of a clip, and an anomaly branch that learns a clue map."""

from __future__ import annotations

import math

import timm
import torch
import torch.nn.functional as F
from timm.models.xception import SeparableConv2d
from torch import nn

REDUCTION = 16
BRANCH_WIDTH, BRANCH_BLOCKS = 256, 9
# The anomaly branch reads the output of Xception's 5th block (timm's `block5`, 728 channels).
BRANCH_BLOCK = 5
BLOCK5_CHANNELS = 728


def block5_size(size: tuple[int, int]) -> tuple[int, int]:
    """Height and width of Xception's block-5 map for an input of `size`: two unpadded 3x3
    convolutions (the first stride 2), then three stride-2 blocks. 14x14 at 224 px."""
    sides = []
    for side in size:
        side = (side - 3) // 2 + 1 - 2
        for _ in range(3):
            side = (side - 1) // 2 + 1
        sides.append(side)
    return tuple(sides)


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
    """Input: frames (B, T, 3, H, W) of `size`. Output: `logits` (B, 2) of the backbone,
    `branch_logits` (B, 2) of the anomaly branch, and its clue map `clue` (B*T, 728, h, w),
    the size of block 5's output F_out, driven to zero for real clips by the loss."""

    def __init__(self, frames: int, size: tuple[int, int]):
        super().__init__()
        self.backbone = timm.create_model("legacy_xception", pretrained=False, num_classes=0, global_pool="")
        for module in list(self.backbone.modules()):
            if isinstance(module, SeparableConv2d):
                module.conv1 = MotionConsistency(module.conv1.in_channels, frames)
        self.classifier = nn.Linear(self.backbone.num_features, 2)
        # Width 256 inside the 9 residual blocks (the paper gives none): at 728 they would cost
        # four times the backbone.
        self.branch = nn.Sequential(
            nn.Conv2d(BLOCK5_CHANNELS, BRANCH_WIDTH, 1, bias=False), nn.BatchNorm2d(BRANCH_WIDTH), nn.ReLU(inplace=True),
            *[_Residual(BRANCH_WIDTH) for _ in range(BRANCH_BLOCKS)],
            nn.Conv2d(BRANCH_WIDTH, BLOCK5_CHANNELS, 1),
        )
        # F* starts at zero, where the per-sample L1 norm of a real clip (some 10^5 values a
        # frame) has not yet a value to blow up the first steps with.
        nn.init.zeros_(self.branch[-1].weight)
        nn.init.zeros_(self.branch[-1].bias)
        self.branch_classifier = nn.Linear(BLOCK5_CHANNELS * math.prod(block5_size(size)), 2)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        batch, length = frames.shape[:2]
        net = self.backbone
        x = net.act2(net.bn2(net.conv2(net.act1(net.bn1(net.conv1(frames.flatten(0, 1)))))))
        for index in range(1, 13):
            x = getattr(net, f"block{index}")(x)
            if index == BRANCH_BLOCK:
                clue = self.branch(x)
        features = net.act4(net.bn4(net.conv4(net.act3(net.bn3(net.conv3(x))))))
        per_clip = features.view(batch, length, *features.shape[1:]).mean(dim=(1, 3, 4))
        # One linear classifier per frame's clue map, its logits averaged over the clip.
        branch_logits = self.branch_classifier(clue.flatten(1)).view(batch, length, 2).mean(dim=1)
        return {"logits": self.classifier(per_clip), "branch_logits": branch_logits, "clue": clue}
