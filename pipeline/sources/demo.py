"""`demo`: a small labelled corpus the tool makes itself, so the main job runs anywhere.

Every video shows a real face photo (scikit-image's astronaut) moving smoothly over a
textured background, with its inner face region pasted on top. In real videos that inner
patch follows a smooth path; in fakes it jitters independently each frame, with the same
spread. Any single frame of either class looks alike; only motion tells them apart.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data

from pipeline.sources.base import Inventory, SourceOptions, VideoRecord
from stages.errors import ConfigError

VERSION = 1
IDENTITIES = 16
FPS = 25
N_FRAMES = 100
HEIGHT, WIDTH = 288, 384
# Identities 0-9 train, 10-11 val, 12-15 test; each identity has one real and one fake.
SPLIT_BY_IDENTITY = ["train"] * 10 + ["val"] * 2 + ["test"] * 4
JITTER_PX = 1.5  # amplitude of the inner face's offset, in frame pixels
MARKER = "demo.json"

# The astronaut's head and, inside it, the inner face (x0, y0, x1, y1 in the photo).
HEAD_REGION = (120, 10, 330, 250)
FACE_REGION = (170, 70, 276, 184)


def inventory(root: Path, options: SourceOptions) -> Inventory:
    ensure_corpus(root)
    out = []
    for i, split in enumerate(SPLIT_BY_IDENTITY):
        identity = f"id{i:02d}"
        real, fake = f"real/{identity}", f"fake/{identity}"
        out += [
            VideoRecord(real, str(root / f"{real}.mp4"), 0, split, "demo", {"identity": identity, "group": identity}),
            VideoRecord(fake, str(root / f"{fake}.mp4"), 1, split, "demo",
                        {"identity": identity, "group": identity, "original": real, "method": "jittered-repaste"}),
        ]
    return Inventory(out)


def ensure_corpus(root: Path) -> None:
    """Write the corpus under root unless a complete one of this version is there."""
    marker = root / MARKER
    if marker.exists() and json.loads(marker.read_text()).get("version") == VERSION:
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        _write_corpus(root)
    except OSError as exc:
        raise ConfigError(f"--root {root}: cannot write the demo corpus there ({exc.strerror or exc})") from exc
    marker.write_text(json.dumps({"version": VERSION, "identities": IDENTITIES, "frames": N_FRAMES, "fps": FPS}))


def _write_corpus(root: Path) -> None:
    for i in range(IDENTITIES):
        real, fake = render_identity(i)
        for kind, frames in (("real", real), ("fake", fake)):
            target = root / kind / f"id{i:02d}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial.mp4")
            encode_video(partial, frames, FPS)
            os.replace(partial, target)


def render_identity(index: int) -> tuple[np.ndarray, np.ndarray]:
    """The real and the fake video of one identity: two uint8 (N_FRAMES, H, W, 3) arrays."""
    rng = np.random.default_rng([20261123, index])
    tint = 1 + rng.normal(0, 0.08, 3).astype(np.float32)
    head, head_alpha = face_sprite(HEAD_REGION, tint, flip=bool(index % 2))
    face, face_alpha = face_sprite(FACE_REGION, tint, flip=bool(index % 2))
    backdrop = background(rng)
    scale = rng.uniform(0.95, 1.15)
    t = np.arange(N_FRAMES)
    amplitude, period, phase = rng.uniform(15, 45, 2), rng.uniform(70, 160, 2), rng.uniform(0, 2 * np.pi, 2)
    centre = np.stack([WIDTH / 2 + amplitude[0] * np.sin(2 * np.pi * t / period[0] + phase[0]),
                       HEIGHT / 2 + amplitude[1] * np.sin(2 * np.pi * t / period[1] + phase[1])], axis=1)
    smooth_offset, jitter_offset = inner_face_offsets(rng, N_FRAMES)
    grain = np.random.default_rng([20261123, index, 1])
    videos = []
    for offsets in (smooth_offset, jitter_offset):
        frames = np.empty((N_FRAMES, HEIGHT, WIDTH, 3), np.uint8)
        for k in range(N_FRAMES):
            canvas = paste_sprite(backdrop.copy(), head, head_alpha, HEAD_REGION, HEAD_REGION, scale, centre[k])
            canvas = paste_sprite(canvas, face, face_alpha, FACE_REGION, HEAD_REGION, scale, centre[k] + offsets[k])
            canvas += 2.0 * grain.standard_normal(canvas.shape, dtype=np.float32)
            frames[k] = np.clip(canvas, 0, 255).astype(np.uint8)
        videos.append(frames)
    return videos[0], videos[1]


def inner_face_offsets(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The inner face's offset from the head, float64 (n, 2) pixels at scale 1: a real video's
    (a slow sine per axis) and a fake's (independent every frame)."""
    t = np.arange(n)
    smooth_period, smooth_phase = rng.uniform(40, 90, 2), rng.uniform(0, 2 * np.pi, 2)
    smooth_offset = JITTER_PX * np.stack([np.sin(2 * np.pi * t / smooth_period[k] + smooth_phase[k]) for k in range(2)], axis=1)
    # Same spread per axis as the smooth path (a sine's standard deviation is amplitude/sqrt 2).
    jitter_offset = rng.normal(0, JITTER_PX / np.sqrt(2), (n, 2))
    return smooth_offset, jitter_offset


def encode_video(path: Path, frames: Iterable[np.ndarray], fps: float, codec: str = "libx264", options: dict | None = None) -> None:
    """Write RGB uint8 (H, W, 3) frames, from an array or a generator, as a video file."""
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p" if codec in ("libx264", "libx265", "mpeg4") else stream.pix_fmt
        stream.options = options if options is not None else ({"crf": "18"} if codec == "libx264" else {})
        for frame in itertools.chain([first], frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def face_sprite(region, tint: np.ndarray, flip: bool):
    """A region of the photo, colour-tinted, with a feathered elliptical alpha; float32 RGB
    and alpha."""
    x0, y0, x1, y1 = region
    rgb = data.astronaut()[y0:y1, x0:x1].astype(np.float32) * tint
    alpha = np.zeros(rgb.shape[:2], np.float32)
    h, w = alpha.shape
    cv2.ellipse(alpha, (w // 2, h // 2), (int(w * 0.42), int(h * 0.45)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=max(w, h) * 0.04)
    if flip:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    return np.ascontiguousarray(rgb), np.ascontiguousarray(alpha)


def paste_sprite(canvas, rgb, alpha, region, head_region, scale, head_centre):
    """Alpha-blend a sprite whose photo region sits inside the head, placed so the head's
    centre lands at head_centre (sub-pixel)."""
    hx0, hy0, hx1, hy1 = head_region
    rx0, ry0 = region[:2]
    origin = np.asarray(head_centre) - scale * np.array([(hx1 - hx0) / 2, (hy1 - hy0) / 2])
    offset = origin + scale * np.array([rx0 - hx0, ry0 - hy0])
    height, width = rgb.shape[:2]
    # Blend only where the sprite lands.
    x0, y0 = np.maximum(np.floor(offset).astype(int) - 1, 0)
    x1 = min(canvas.shape[1], int(np.ceil(offset[0] + scale * width)) + 1)
    y1 = min(canvas.shape[0], int(np.ceil(offset[1] + scale * height)) + 1)
    if x1 <= x0 or y1 <= y0:
        return canvas
    matrix = np.array([[scale, 0, offset[0] - x0], [0, scale, offset[1] - y0]])
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(rgb, matrix, size, flags=cv2.INTER_LINEAR)
    weight = cv2.warpAffine(alpha, matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    region = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = region + (warped - region) * weight
    return canvas


def background(rng, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A colourful, smoothly varying backdrop with fine texture: float32 (H, W, 3)."""
    coarse = rng.uniform(40, 210, (6, 8, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    detail = cv2.GaussianBlur(rng.normal(0, 12, (height, width, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(smooth + detail, 0, 255)
