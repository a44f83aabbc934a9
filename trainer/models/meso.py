"""MesoNet (Afchar et al. 2018): Meso-4 and MesoInception-4, compact frame classifiers. The
optical-flow CNN reuses Meso-4's shape for each of its inputs."""

from __future__ import annotations

import math

import torch
from torch import nn


def _block(conv: nn.Module, channels: int, pool: int) -> list[nn.Module]:
    # Keras order of the original: conv with ReLU, then batch norm, then 'same' max-pooling.
    return [conv, nn.ReLU(inplace=True), nn.BatchNorm2d(channels), nn.MaxPool2d(pool, ceil_mode=True)]


class Inception(nn.Module):
    """MesoInception's layer: 1x1, and 1x1 then 3x3 at dilations 1, 2, 3, concatenated."""

    def __init__(self, in_channels: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.out_channels = a + b + c + d
        self.paths = nn.ModuleList([nn.Sequential(nn.Conv2d(in_channels, a, 1), nn.ReLU(inplace=True))] + [
            nn.Sequential(nn.Conv2d(in_channels, n, 1), nn.ReLU(inplace=True),
                          nn.Conv2d(n, n, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True))
            for n, dilation in ((b, 1), (c, 2), (d, 3))
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([path(x) for path in self.paths], dim=1)


def _inception_block(inception: Inception) -> list[nn.Module]:
    # The inception layer has its ReLUs inside.
    return [inception, nn.BatchNorm2d(inception.out_channels), nn.MaxPool2d(2, ceil_mode=True)]


class MesoNet(nn.Module):
    """Meso-4 (or MesoInception-4 with `inception=True`) on (N, C, H, W) images of `size`;
    logits (N,), one per image (the paper's sigmoid output before the sigmoid)."""

    def __init__(self, size: tuple[int, int], in_channels: int = 3, inception: bool = False):
        super().__init__()
        if inception:
            first, second = Inception(in_channels, 1, 4, 4, 2), Inception(11, 2, 4, 4, 2)
            head = _inception_block(first) + _inception_block(second)
            width = second.out_channels
        else:
            head = _block(nn.Conv2d(in_channels, 8, 3, padding=1), 8, 2) + _block(nn.Conv2d(8, 8, 5, padding=2), 8, 2)
            width = 8
        self.features = nn.Sequential(
            *head,
            *_block(nn.Conv2d(width, 16, 5, padding=2), 16, 2),
            *_block(nn.Conv2d(16, 16, 5, padding=2), 16, 4),
        )
        cells = math.prod(math.ceil(side / 32) for side in size)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * cells, 16), nn.LeakyReLU(0.1), nn.Dropout(0.5), nn.Linear(16, 1)
        )

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(self.features(frames)).squeeze(-1)}
