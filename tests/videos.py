"""Videos the tests make, with known answers: frames that carry their own index, textures
moved by a known sub-pixel shift, a real face moving on a smooth path, two faces moving
independently."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.sources.demo import encode_video

BLOCK = 16
BITS = 10


def index_frames(n: int, height: int = 96, width: int = 176) -> np.ndarray:
    """uint8 (n, H, W, 3) frames whose first row of 16 px blocks spells the frame index in
    binary (white 1, black 0): exact through any codec, readable after decoding."""
    frames = np.full((n, height, width, 3), 96, np.uint8)
    for i in range(n):
        for bit in range(BITS):
            frames[i, :BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (i >> bit) & 1 else 0
    return frames


def read_index(frame: np.ndarray) -> int:
    return sum(1 << bit for bit in range(BITS) if frame[4:12, bit * BLOCK + 4 : bit * BLOCK + 12].mean() > 128)


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture, float32 in [0, 255]: gradients everywhere, no flat areas."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(height, width, 3)).astype(np.float32)
    fine = cv2.GaussianBlur(noise, (0, 0), 2.0)
    coarse = cv2.GaussianBlur(noise, (0, 0), 6.0)
    image = fine / fine.std() + 2 * coarse / coarse.std()
    return (image - image.min()) / (image.max() - image.min()) * 255


def translated(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The image moved by (dx, dy) pixels, sub-pixel, as uint8."""
    matrix = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
    moved = cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return np.clip(np.round(moved), 0, 255).astype(np.uint8)


def write(path: Path, frames: np.ndarray, fps: float = 25, codec: str = "libx264", options: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_video(path, frames, fps, codec, options)
    return path


def lossless(path: Path, frames: np.ndarray, fps: float = 25) -> Path:
    """x264 with qp 0: lossless on YUV, so decoded pixels equal the input up to colour rounding."""
    return write(path, frames, fps, "libx264", {"qp": "0", "preset": "ultrafast"})


def moving_face(centres_xy: np.ndarray, height: int = 288, width: int = 384, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): scikit-image's astronaut photo, head and shoulders, pasted on a
    texture with its face centre at each given (x, y), sub-pixel, with sensor grain."""
    from skimage import data

    photo = data.astronaut()[20:300, 90:370].astype(np.float32)
    face_centre_in_photo = np.array([223 - 90, 127 - 20], np.float64)
    background = texture(height, width, seed) * 0.6 + 50
    grain = np.random.default_rng(seed)
    frames = np.empty((len(centres_xy), height, width, 3), np.uint8)
    for t, centre in enumerate(centres_xy):
        dx, dy = np.asarray(centre) - face_centre_in_photo
        matrix = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
        canvas = background.copy()
        cv2.warpAffine(photo, matrix, (width, height), dst=canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
        canvas += grain.normal(0, 2.0, canvas.shape).astype(np.float32)
        frames[t] = np.clip(canvas, 0, 255).astype(np.uint8)
    return frames


def smooth_path(n: int, height: int = 288, width: int = 384) -> np.ndarray:
    """(n, 2) face centres on a slow Lissajous path, well inside the frame."""
    t = np.arange(n)
    return np.stack([width / 2 + 40 * np.sin(2 * np.pi * t / 150), height / 2 + 15 * np.sin(2 * np.pi * t / 110 + 1)], axis=1)


def small_face_video(seed: int, n: int = 24, height: int = 150, width: int = 200) -> np.ndarray:
    """uint8 (n, H, W, 3): the moving face at a size dlib still finds, for cheap pipeline runs."""
    return moving_face(smooth_path(n, height, width), height, width, seed=seed)


def two_faces(n: int = 48, swapped: int | None = 1, height: int = 288, width: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two of the demo's faces, a large one on the left and a smaller one on the right, each
    moving on its own slow path, with the demo's motion-only manipulation (an inner face
    that jitters on its head) on face `swapped` (0 or 1; None: both real). Returns frames
    uint8 (n, H, W, 3) and each face's true inner-face box, float64 (2, n, 4) xyxy, large first."""
    from pipeline.sources import demo

    rng = np.random.default_rng([1217, seed])
    backdrop = demo.background(rng, height, width)
    t = np.arange(n)
    people = []
    for index, (scale, home_x) in enumerate([(1.1, 0.27 * width), (0.9, 0.74 * width)]):
        tint = 1 + rng.normal(0, 0.08, 3).astype(np.float32)
        sprites = [demo.face_sprite(region, tint, flip=bool(index)) for region in (demo.HEAD_REGION, demo.FACE_REGION)]
        period, phase = rng.uniform(40, 80, 2), rng.uniform(0, 2 * np.pi, 2)
        centre = np.stack([home_x + 12 * np.sin(2 * np.pi * t / period[0] + phase[0]),
                           height / 2 + 10 * np.sin(2 * np.pi * t / period[1] + phase[1])], axis=1)
        smooth, jitter = demo.inner_face_offsets(rng, n)
        people.append((sprites, scale, centre, jitter if index == swapped else smooth))
    grain = np.random.default_rng([1217, seed, 1])
    frames = np.empty((n, height, width, 3), np.uint8)
    boxes = np.empty((2, n, 4))
    hx0, hy0, hx1, hy1 = demo.HEAD_REGION
    fx0, fy0, fx1, fy1 = demo.FACE_REGION
    for k in range(n):
        canvas = backdrop.copy()
        for index, ((head, face), scale, centre, offset) in enumerate(people):
            canvas = demo.paste_sprite(canvas, *head, demo.HEAD_REGION, demo.HEAD_REGION, scale, centre[k])
            canvas = demo.paste_sprite(canvas, *face, demo.FACE_REGION, demo.HEAD_REGION, scale, centre[k] + offset[k])
            origin = centre[k] + offset[k] - scale * np.array([(hx1 - hx0) / 2, (hy1 - hy0) / 2])
            boxes[index, k] = np.tile(origin, 2) + scale * np.array([fx0 - hx0, fy0 - hy0, fx1 - hx0, fy1 - hy0])
        canvas += 2.0 * grain.standard_normal(canvas.shape, dtype=np.float32)
        frames[k] = np.clip(canvas, 0, 255).astype(np.uint8)
    return frames, boxes
