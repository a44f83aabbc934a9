"""ImageNet-shaped trunks shared by several detectors, and the two-stream family's flow net."""

from __future__ import annotations

import timm
import torch
import torchvision
from torch import nn

RESNET50_FEATURES = 2048
# The temporal stream's map per flow, (64, 25, 46) for a 108x192 flow (the paper's shapes).
FLOW_MAP_CHANNELS = 64


def resnet50_trunk() -> nn.Module:
    """torchvision's ResNet-50 without its classifier: (N, 3, H, W) -> (N, 2048). Its
    state-dict keys are torchvision's, so ImageNet weight files load into it."""
    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Identity()
    return net


class VGG16Trunk(nn.Module):
    """torchvision's VGG16 convolutions, globally average-pooled: (N, 3, H, W) -> (N, 512), the
    Keras `include_top=False, pooling='avg'` network. Keys `features.*` are torchvision's."""

    features_out = 512

    def __init__(self):
        super().__init__()
        self.features = torchvision.models.vgg16(weights=None).features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images).mean(dim=(2, 3))


def trunk(name: str) -> tuple[nn.Module, int]:
    """A headless ImageNet trunk by name and its feature width: `resnet50`, `vgg16`, or any timm
    model name (e.g. `efficientnet_b7`, whose keys are timm's)."""
    if name == "resnet50":
        return resnet50_trunk(), RESNET50_FEATURES
    if name == "vgg16":
        return VGG16Trunk(), VGG16Trunk.features_out
    net = timm.create_model(name, pretrained=False, num_classes=0)
    return net, net.num_features


def flow_map_size(size: tuple[int, int]) -> tuple[int, int]:
    """Height and width of `flow_convnet`'s map for a flow of `size`."""
    height, width = size
    after_first = ((height - 5) // 2 + 1, (width - 5) // 2 + 1)
    return tuple((side - 3) // 2 + 1 for side in after_first)


def flow_convnet() -> nn.Sequential:
    """The two-stream temporal stream's conv net: (N, 2, H, W) flow -> (N, 64, h, w), 108x192
    -> 25x46 as in the paper, whose layer shapes these two strided convolutions reproduce
    (kernels and widths are not given)."""
    return nn.Sequential(
        nn.Conv2d(2, 32, 5, stride=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, FLOW_MAP_CHANNELS, 3, stride=2, bias=False), nn.BatchNorm2d(FLOW_MAP_CHANNELS), nn.ReLU(inplace=True),
    )
