"""The benchmark corpus: 10 s talking-head clips at 30 fps, three 1280x720 and three
640x360, H.264 with x264's defaults (keyframe interval 250), plus Megamind.avi."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from pipeline.sources.demo import FACE_REGION, HEAD_REGION, background, encode_video, face_sprite, paste_sprite

VERSION = 1
SIZES = [(720, 1280)] * 3 + [(360, 640)] * 3
SECONDS, FPS = 10, 30


def ensure_corpus(folder: Path, megamind: Path | None) -> list[Path]:
    """The corpus's files, written once (a marker file records what is there)."""
    marker = folder / "corpus.json"
    names = [f"talking_{h}p_{i}.mp4" for i, (h, _) in enumerate(SIZES)]
    if not (marker.exists() and json.loads(marker.read_text()).get("version") == VERSION):
        folder.mkdir(parents=True, exist_ok=True)
        for index, ((height, width), name) in enumerate(zip(SIZES, names)):
            partial = folder / f"{name}.partial.mp4"
            encode_video(partial, talking_head(index, height, width), FPS, options={})
            os.replace(partial, folder / name)
        marker.write_text(json.dumps({"version": VERSION, "files": names}))
    paths = [folder / name for name in names]
    if megamind is not None and megamind.is_file():
        target = folder / "Megamind.avi"
        if not target.exists():
            shutil.copyfile(megamind, target)
        paths.append(target)
    return paths


def talking_head(seed: int, height: int, width: int):
    """Frames (uint8 H, W, 3) of a face photo drifting and nodding smoothly, with sensor
    grain, its face about a sixth of the frame wide."""
    rng = np.random.default_rng([1207, seed])
    tint = 1 + rng.normal(0, 0.05, 3).astype(np.float32)
    head, head_alpha = face_sprite(HEAD_REGION, tint, flip=bool(seed % 2))
    face, face_alpha = face_sprite(FACE_REGION, tint, flip=bool(seed % 2))
    backdrop = background(rng, height, width)
    scale = height / 288 * rng.uniform(1.0, 1.1)
    grain = np.random.default_rng([1207, seed, 1])
    n = SECONDS * FPS
    t = np.arange(n)
    amplitude = np.array([0.08 * width, 0.04 * height])
    period, phase = rng.uniform(90, 200, 2), rng.uniform(0, 2 * np.pi, 2)
    centre = np.stack([width / 2 + amplitude[0] * np.sin(2 * np.pi * t / period[0] + phase[0]),
                       height / 2 + amplitude[1] * np.sin(2 * np.pi * t / period[1] + phase[1])], axis=1)
    for k in range(n):
        canvas = paste_sprite(backdrop.copy(), head, head_alpha, HEAD_REGION, HEAD_REGION, scale, centre[k])
        canvas = paste_sprite(canvas, face, face_alpha, FACE_REGION, HEAD_REGION, scale, centre[k])
        canvas += 2.0 * grain.standard_normal(canvas.shape, dtype=np.float32)
        yield np.clip(canvas, 0, 255).astype(np.uint8)
