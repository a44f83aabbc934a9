"""`export --format deepfakebench`: a store's crops and landmarks in the layout DeepfakeBench's
preprocessing leaves (one PNG and one .npy a frame) and the dataset JSON its loader reads, so
that its detectors train on dfprep's preprocessing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from feature_store import manifest
from feature_store.schema import FACE, FRAMES, Status, landmarks_of
from pipeline.report import open_existing_store
from pipeline.sources.base import SPLITS
from stages.errors import ConfigError

FORMATS = ("deepfakebench",)


@dataclass(frozen=True)
class ExportSummary:
    videos: int
    frames: int
    index_path: Path
    label_dict: dict[str, int]  # what DeepfakeBench's config must map the labels to


def export_deepfakebench(store_url: str, out: str, name: str | None = None) -> ExportSummary:
    """`out/frames/<video>/<index>.png` (RGB crops), `out/landmarks/<video>/<index>.npy`
    (float32 (68, 2) in crop pixels), and `out/<name>.json`:
    `{name: {<name>_real|<name>_fake: {train|val|test: {<video>: {"label", "frames": [paths]}}}}}`
    with absolute frame paths, `<index>` the source frame number."""
    store = open_existing_store(store_url)
    rows = [row for row in manifest.load(store) if row.status is Status.DONE]
    if not rows:
        raise ConfigError(f"--store {store_url}: no done video to export")
    root = Path(out).resolve()
    # DeepfakeBench finds a frame's landmarks by replacing "frames" with "landmarks" in its path.
    if "frames" in str(root):
        raise ConfigError(f"--out {out}: must not contain 'frames' (DeepfakeBench derives landmark paths by replacing it)")
    name = name or rows[0].entry.dataset
    if not name or "/" in name or "frames" in name:
        raise ConfigError(f"--name {name!r}: must be a file name without '/' or 'frames'")
    labels = {0: f"{name}_real", 1: f"{name}_fake"}
    index = {name: {label: {split: {} for split in SPLITS} for label in labels.values()}}
    frames_written = 0
    for row in sorted(rows, key=lambda r: r.video_id):
        frames_thw3, landmarks_tk2, frame_index = _main_face(store, row)
        video = row.key.replace("frames", "frms")
        frame_paths = _write_video(root, video, frames_thw3, landmarks_tk2, frame_index)
        label = labels[int(row.entry.label)]
        index[name][label].setdefault(row.entry.split, {})[video] = {"label": label, "frames": frame_paths}
        frames_written += len(frame_paths)
    index_path = root / f"{name}.json"
    index_path.write_text(json.dumps(index, indent=1))
    return ExportSummary(len(rows), frames_written, index_path, {labels[0]: 0, labels[1]: 1})


def _main_face(store, row) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The main face's crops (T, H, W, 3), landmarks (T, 68, 2) in crop pixels and source
    frame numbers (T,)."""
    video = store.open_video(row.key, row.generation)
    frames = video[FRAMES]
    track = video.track()
    landmarks = landmarks_of(track)[0]
    per_face = frames.metadata.dimension_names[0] == FACE
    return frames[0] if per_face else frames[...], landmarks, track["frame_index"][0].astype(np.int64)


def _write_video(root: Path, video: str, frames_thw3: np.ndarray, landmarks_tk2: np.ndarray, frame_index: np.ndarray) -> list[str]:
    frame_dir, landmark_dir = root / "frames" / video, root / "landmarks" / video
    frame_dir.mkdir(parents=True, exist_ok=True)
    landmark_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame, points, number in zip(frames_thw3, landmarks_tk2, frame_index):
        path = frame_dir / f"{int(number):03d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise ConfigError(f"--out {root}: cannot write {path}")
        np.save(landmark_dir / f"{int(number):03d}.npy", points.astype(np.float32))
        paths.append(str(path))
    return paths
