"""A registered network with its input normalisation: store items in, one output per unit
(frame or clip) out."""

from __future__ import annotations

import torch
from torch import nn

from trainer.dataset import ClipSpec
from trainer.losses import fake_probability
from trainer.registry import Variant


class Detector(nn.Module):
    """Wraps `variant.build(spec)`. Takes the Dataset's uint8 frames (B, [G,] L, 3, H, W) and
    flow; frame-level nets see each frame as an image, so their outputs come back flattened
    to (B*L, ...) units, in sample order."""

    def __init__(self, variant: Variant, spec: ClipSpec):
        super().__init__()
        self.variant, self.spec = variant, spec
        self.net = variant.build(spec)
        mean, std = variant.normalisation
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        frames = self._normalise(frames)
        # HSV-coded flow is an image and is normalised like one; raw flow stays in pixels.
        if flow is not None:
            flow = self._normalise(flow) if flow.dtype == torch.uint8 else flow.float()
        if self.variant.level == "frame":
            frames = frames.flatten(0, 1)
            flow = flow.flatten(0, 1) if flow is not None else None
        return self.net(frames, flow)

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        # Frozen layers (fine-tuning from published weights) keep the published batch
        # statistics as well as their weights.
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None and not module.weight.requires_grad:
                module.eval()
        return self

    def units_per_sample(self, frames: torch.Tensor) -> int:
        return frames.shape[1] if self.variant.level == "frame" else 1

    def probability(self, output: dict[str, torch.Tensor]) -> torch.Tensor:
        return fake_probability(output, self.variant.head)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean) / self.std
