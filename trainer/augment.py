"""Training augmentations of whole clips: one random crop, brightness and flip for all frames
of a sample, so that the motion between them is kept."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ClipAugment:
    """A random crop keeping `min_crop` to all of each side (aspect kept), resized back; brightness times
    1 +- `brightness`; horizontal flip with probability `flip`. Draws from torch's generator,
    which DataLoader seeds per worker."""

    min_crop: float = 0.8
    brightness: float = 0.2
    flip: float = 0.5

    def __call__(self, item: dict) -> dict:
        frames = item["frames"]  # uint8 (..., 3, H, W)
        height, width = frames.shape[-2:]
        scale = self.min_crop + (1 - self.min_crop) * torch.rand(()).item()
        crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        clip = frames[..., top : top + crop_h, left : left + crop_w].float()
        clip = F.interpolate(clip.flatten(0, -4), size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        clip = clip.view(frames.shape) * (1 + self.brightness * (2 * torch.rand(()).item() - 1))
        if torch.rand(()).item() < self.flip:
            clip = clip.flip(-1)
        return {**item, "frames": clip.round().clamp(0, 255).to(torch.uint8)}
