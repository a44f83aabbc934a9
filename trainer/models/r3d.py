"""3D ResNets on face clips: torchvision's R3D-18, and the 50/101-layer bottleneck networks in
the layout of the public Kinetics-pretrained 3D ResNets (Hara et al., kenshohara/3D-ResNets-PyTorch):
a 7x7x7 stride-(1,2,2) stem, a 3x3x3 stride-2 max-pool, bottleneck blocks, `conv1`, `bn1`,
`layerX.Y.conv1/bn1/...`, `downsample.0/1` and `fc`, so their weight files load by name."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video import resnet as video_resnet

BOTTLENECK_LAYERS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
STEM_WIDTH, EXPANSION = 64, 4


class Bottleneck3D(nn.Module):
    """1x1x1 reduce, 3x3x3 (carrying the stride), 1x1x1 expand 4x, plus the shortcut."""

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv3d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        # Shortcut type B of the public models: a projection only where the shape changes.
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm3d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet3D(nn.Module):
    """(B, 3, T, H, W) -> (B, classes). At 224 px the conv5 (`layer4`) maps are 7x7."""

    def __init__(self, depth: int, classes: int = 2):
        super().__init__()
        self.conv1 = nn.Conv3d(3, STEM_WIDTH, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(STEM_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        channels, layers = STEM_WIDTH, []
        for index, blocks in enumerate(BOTTLENECK_LAYERS[depth]):
            width = STEM_WIDTH * 2**index
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                layer.append(Bottleneck3D(channels, width, stride if block == 0 else 1))
                channels = width * EXPANSION
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(clip))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class R3D(nn.Module):
    """Input: frames (B, L, 3, H, W); logits (B, classes): 2 for the softmax head, 1 (squeezed
    to (B,)) for a sigmoid one."""

    def __init__(self, depth: int, classes: int = 2):
        super().__init__()
        self.net = video_resnet.r3d_18(weights=None, num_classes=classes) if depth == 18 else ResNet3D(depth, classes)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(frames.transpose(1, 2))
        return {"logits": logits.squeeze(-1) if logits.shape[-1] == 1 else logits}
