"""Tiny feature stores written directly, in the layout `features` writes, for tests that need
a store but not the stages that fill one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feature_store import FeatureStore, manifest, video_key
from pipeline.process import WorkItem, record_attrs
from pipeline.profiles import Profile
from pipeline.sources.base import VideoRecord

SPLITS = {"train": 2, "val": 2, "test": 2}  # identities a split; each has a real and a fake


def write_tiny_store(path: Path, profile: Profile, frames: int = 21, size: tuple[int, int] = (64, 64), clips: int = 1,
                     splits: dict[str, int] = SPLITS, fakes: int = 1, seed: int = 0) -> Path:
    """One real and `fakes` fake videos per identity, `clips` clips of `frames` frames each: a
    random texture that drifts smoothly in reals and jumps at random in fakes, with flow,
    landmarks and the attributes `features` records."""
    rng = np.random.default_rng(seed)
    store = FeatureStore(path)
    identity = 0
    for split, count in splits.items():
        for _ in range(count):
            for copy, label in enumerate([0] + [1] * fakes):
                video_id = f"{('real', 'fake')[label]}/id{identity:02d}" + (f"-{copy}" if copy > 1 else "")
                record = VideoRecord(video_id, f"/nowhere/{video_id}.mp4", label, split, "tiny")
                arrays = _video_arrays(rng, label, frames, clips, size)
                attrs = record_attrs(WorkItem(record, video_key(record.video_id), (), "test"), profile, "done", "")
                attrs["counts"] = {"frames": len(arrays["frames"]), "flows": len(arrays["flow"]), "face_found": len(arrays["frames"])}
                store.write_video(video_key(record.video_id), arrays, attrs)
            identity += 1
    manifest.rebuild(store)
    return path


def _video_arrays(rng: np.random.Generator, label: int, frames: int, clips: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    height, width = size
    texture = rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8)
    steps = rng.normal(0, 3.0, (frames * clips, 2)) if label else np.full((frames * clips, 2), 0.5)
    offsets = np.cumsum(steps, axis=0).round().astype(int) % height
    images = np.stack([texture[y : y + height, x : x + width] for y, x in offsets])
    clip_index = np.repeat(np.arange(clips, dtype=np.int32), frames)
    starts = np.flatnonzero(clip_index[1:] == clip_index[:-1])
    pairs = np.stack([starts, starts + 1], axis=1).astype(np.int32)
    flow = np.broadcast_to(steps[pairs[:, 1], None, None, ::-1], (len(pairs), height, width, 2)).astype(np.float16)
    landmarks = rng.uniform(0, min(size), (len(images), 68, 2)).astype(np.float32)
    return {
        "frames": images,
        "flow": np.ascontiguousarray(flow),
        "flow_pairs": pairs,
        "frame_index": np.arange(len(images), dtype=np.int64) * 3,
        "clip_index": clip_index,
        "timestamps_s": np.arange(len(images)) * 3 / 25.0,
        "landmarks": landmarks,
        "face_found": np.ones(len(images), bool),
    }
