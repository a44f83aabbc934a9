"""Farneback optical flow as batched torch operations, on CUDA where torch sees a GPU: OpenCV's
CPU algorithm (modules/video/src/optflowgf.cpp) with its pyramid, kernels, borders and edge
weights, so that the fields agree with cv2's to about 1e-5 px. Imported only when the torch flow
backend is chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from stages.flow import FlowConfig

# OpenCV stops adding levels once a side would drop under this.
MIN_LEVEL_SIDE = 32
# OpenCV damps the update near the image edge, where the expansion sees replicated pixels.
EDGE_WEIGHTS = (0.14, 0.14, 0.4472, 0.4472, 0.4472)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def farneback(gray_thw: np.ndarray, pairs_f2: np.ndarray, config: FlowConfig) -> np.ndarray:
    """float32 (F, H, W, 2) flow from gray_thw[pairs[i, 0]] to gray_thw[pairs[i, 1]], x then y;
    `gray_thw` uint8 or float32 (T, H, W)."""
    on = device()
    # On CPU a batch of 16 pairs stays in cache: three times faster per pair than 120 at once.
    per_batch = 256 if on.type == "cuda" else 16
    flow = np.empty((len(pairs_f2), *gray_thw.shape[1:], 2), np.float32)
    for start in range(0, len(pairs_f2), per_batch):
        batch = np.asarray(pairs_f2[start : start + per_batch])
        # Each frame is expanded once per level, however many pairs of the batch share it.
        used, slots = np.unique(batch, return_inverse=True)
        images = torch.from_numpy(np.ascontiguousarray(gray_thw[used], np.float32)).to(on)[:, None]
        slots = torch.from_numpy(slots.reshape(-1, 2)).to(on)
        flow[start : start + len(batch)] = _farneback(images, slots[:, 0], slots[:, 1], config).permute(0, 2, 3, 1).cpu().numpy()
    return flow


def _farneback(images: torch.Tensor, first: torch.Tensor, second: torch.Tensor, config: FlowConfig) -> torch.Tensor:
    """(N, 2, H, W) float32 flow from images[first] to images[second]; `images` (T, 1, H, W)."""
    flow = None
    for scale, size in _levels(*images.shape[-2:], config):
        if flow is None:
            flow = images.new_zeros((len(first), 2, *size))
        else:
            flow = _resize(flow, size) * (1 / config.pyr_scale)
        sigma = (1 / scale - 1) * 0.5
        level = _resize(_gaussian_blur(images, sigma, max(round(sigma * 5) | 1, 3)), size)
        expansion = _poly_expansion(level, config.poly_n, config.poly_sigma)
        r0, r1 = expansion[first], expansion[second]
        down, across = _window(*size, config, flow)
        matrices = _update_matrices(r0, r1, flow)
        for i in range(config.iterations):
            flow = _solve(down @ matrices @ across)
            if i < config.iterations - 1:
                matrices = _update_matrices(r0, r1, flow)
    return flow


def _levels(height: int, width: int, config: FlowConfig) -> list[tuple[float, tuple[int, int]]]:
    """(scale, (h, w)) from the coarsest level to full size, as OpenCV picks them."""
    levels, scale = 0, 1.0
    while levels < config.levels:
        scale *= config.pyr_scale
        if width * scale < MIN_LEVEL_SIDE or height * scale < MIN_LEVEL_SIDE:
            break
        levels += 1
    out = []
    for k in range(levels, -1, -1):
        scale = 1.0
        for _ in range(k):
            scale *= config.pyr_scale
        out.append((scale, (round(height * scale), round(width * scale))))
    return out


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Half-pixel centres and clamped edges: cv2.INTER_LINEAR's sampling.
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _gaussian_blur(images: torch.Tensor, sigma: float, ksize: int) -> torch.Tensor:
    """cv2.GaussianBlur on (N, 1, H, W) with its default reflect-101 border."""
    if sigma <= 0:
        taps = np.array([0.25, 0.5, 0.25])  # cv2's table for size 3 and sigma 0: full size is blurred too
    else:
        taps = np.exp(-((np.arange(ksize) - (ksize - 1) / 2) ** 2) / (2 * sigma * sigma))
        taps /= taps.sum()
    height, width = images.shape[-2:]
    return _matrix(taps, height, "reflect101", images) @ images @ _matrix(taps, width, "reflect101", images).T


def _matrix(taps: np.ndarray, length: int, border: str, like: torch.Tensor) -> torch.Tensor:
    """(length, length) float32: a 1-D filter along one side as a matrix, the border folded in.
    Crops are a few hundred pixels, where a dense matmul beats torch's depthwise convolutions
    and on CUDA keeps full float32 (convolutions there may run in TF32)."""
    half = len(taps) // 2
    out = np.repeat(np.arange(length), len(taps))
    source = (np.arange(length)[:, None] + np.arange(-half, half + 1)).ravel()
    if border == "replicate":
        source = source.clip(0, length - 1)
    else:
        source = np.abs(source)
        source = np.where(source > length - 1, 2 * (length - 1) - source, source)
    matrix = np.zeros((length, length))
    np.add.at(matrix, (out, source), np.tile(taps, length))
    return torch.from_numpy(matrix.astype(np.float32)).to(like.device)


def _poly_expansion(images: torch.Tensor, n: int, sigma: float) -> torch.Tensor:
    """(N, 5, H, W) quadratic fit per pixel, OpenCV's channel order: y, x, yy, xx, xy."""
    g, xg, xxg, ig11, ig03, ig33, ig55 = _expansion_kernels(n, sigma)
    height, width = images.shape[-2:]
    c0, c1, c2 = (_matrix(taps, height, "replicate", images) @ images for taps in (g, xg, xxg))
    across_g, across_xg = (_matrix(taps, width, "replicate", images).T for taps in (g, xg))
    across_xx = _matrix(ig03 * g + ig33 * xxg, width, "replicate", images).T
    return torch.stack(
        [ig11 * (c1 @ across_g), ig11 * (c0 @ across_xg), (ig03 * c0 + ig33 * c2) @ across_g, c0 @ across_xx, ig55 * (c1 @ across_xg)],
        1,
    ).squeeze(2)


def _expansion_kernels(n: int, sigma: float):
    """FarnebackPrepareGaussian: the window taps and the inverse Gram entries the fit needs."""
    x = np.arange(-n, n + 1)
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    g = (g / g.sum()).astype(np.float32).astype(np.float64)
    xg, xxg = x * g, x * x * g
    gram = np.zeros((6, 6))
    gy, gx = np.meshgrid(g, g, indexing="ij")
    yy, xx = np.meshgrid(x, x, indexing="ij")
    gram[0, 0] = (gy * gx).sum()
    gram[1, 1] = gram[2, 2] = gram[0, 3] = gram[0, 4] = gram[3, 0] = gram[4, 0] = (gy * gx * xx**2).sum()
    gram[3, 3] = gram[4, 4] = (gy * gx * xx**4).sum()
    gram[5, 5] = gram[3, 4] = gram[4, 3] = (gy * gx * xx**2 * yy**2).sum()
    inverse = np.linalg.inv(gram)
    return g, xg, xxg, *(float(inverse[i, j]) for i, j in ((1, 1), (0, 3), (3, 3), (5, 5)))


def _update_matrices(r0: torch.Tensor, r1: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """(N, 5, H, W) per-pixel normal equations G11, G12, G22, h1, h2 for the displacement,
    from the expansions of both frames, the second sampled where the current flow points."""
    count, _, height, width = r0.shape
    ys = torch.arange(height, device=flow.device, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(width, device=flow.device, dtype=torch.float32).view(1, 1, -1)
    dx, dy = flow[:, 0], flow[:, 1]
    fx, fy = xs + dx, ys + dy
    # Bilinear only where all four neighbours exist; elsewhere the second frame drops out.
    x1, y1 = torch.floor(fx), torch.floor(fy)
    inside = (x1 >= 0) & (x1 < width - 1) & (y1 >= 0) & (y1 < height - 1)
    grid = torch.stack([fx * (2 / (width - 1)) - 1, fy * (2 / (height - 1)) - 1], -1)
    sampled = F.grid_sample(r1, grid, mode="bilinear", padding_mode="border", align_corners=True)
    inside = inside[:, None]
    linear = torch.where(inside, sampled[:, :2], 0)
    quadratic = torch.where(inside, (r0[:, 2:] + sampled[:, 2:]) * 0.5, r0[:, 2:])
    r4, r5, r6 = quadratic[:, 0], quadratic[:, 1], quadratic[:, 2] * 0.5
    r2 = (r0[:, 0] - linear[:, 0]) * 0.5 + r4 * dy + r6 * dx
    r3 = (r0[:, 1] - linear[:, 1]) * 0.5 + r6 * dy + r5 * dx
    edge = _edge_weights(height, width, flow.device)
    r2, r3, r4, r5, r6 = (r * edge for r in (r2, r3, r4, r5, r6))
    return torch.stack([r4 * r4 + r6 * r6, (r4 + r5) * r6, r5 * r5 + r6 * r6, r4 * r2 + r6 * r3, r6 * r2 + r5 * r3], 1)


def _edge_weights(height: int, width: int, on: torch.device) -> torch.Tensor:
    def side(length: int) -> np.ndarray:
        weights = np.ones(length, np.float32)
        band = min(len(EDGE_WEIGHTS), length)
        weights[:band] *= EDGE_WEIGHTS[:band]
        weights[length - band :] *= EDGE_WEIGHTS[:band][::-1]
        return weights

    return torch.from_numpy(np.outer(side(height), side(width))).to(on)


def _window(height: int, width: int, config: FlowConfig, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (H, H) and (W, W) matrices that sum the normal equations over each pixel's window."""
    half = config.winsize // 2
    if config.flags & cv2.OPTFLOW_FARNEBACK_GAUSSIAN:
        sigma = half * 0.3
        taps = np.exp(-(np.arange(-half, half + 1) ** 2) / (2 * sigma * sigma)).astype(np.float32).astype(np.float64)
        taps /= taps.sum()
    else:
        # OpenCV's box spans 2*half+1 pixels but divides by winsize^2, also for an even winsize.
        taps = np.full(2 * half + 1, 1 / config.winsize)
    return _matrix(taps, height, "replicate", like), _matrix(taps, width, "replicate", like).T


def _solve(sums: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) displacement solving each pixel's 2x2 system, lightly regularised as OpenCV does."""
    g11, g12, g22, h1, h2 = sums.unbind(1)
    inverse_det = 1 / (g11 * g22 - g12 * g12 + 1e-3)
    return torch.stack([(g11 * h2 - g12 * h1) * inverse_det, (g22 * h1 - g12 * h2) * inverse_det], 1)
