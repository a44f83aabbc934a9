"""ImageNet-shaped trunks shared by several detectors."""

from __future__ import annotations

import torchvision
from torch import nn

RESNET50_FEATURES = 2048
FLOW_FEATURES = 128


def resnet50_trunk() -> nn.Module:
    """torchvision's ResNet-50 without its classifier: (N, 3, H, W) -> (N, 2048). Its
    state-dict keys are torchvision's, so ImageNet weight files load into it."""
    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Identity()
    return net


def flow_convnet() -> nn.Sequential:
    """The small conv net of the two-stream detectors: (N, 2, H, W) flow -> (N, FLOW_FEATURES)."""
    layers: list[nn.Module] = []
    for width_in, width_out in ((2, 32), (32, 64), (64, FLOW_FEATURES)):
        layers += [nn.Conv2d(width_in, width_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
