"""Tiny feature stores written directly, in the layout `features` writes, for tests that need
a store but not the stages that fill one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feature_store import FeatureStore, manifest, schema, video_key
from feature_store.schema import Counts, Status
from pipeline.process import WorkItem, base_entry
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
                n = frames * clips
                entry = base_entry(WorkItem(record, video_key(record.video_id), (), "test"), profile, Status.DONE, "").replace(
                    clip_lengths=(frames,) * clips, counts=Counts(n, (frames - 1) * clips, n, 1))
                store.write_video(video_key(record.video_id), entry, arrays, chunk_frames=frames)
            identity += 1
    manifest.rebuild(store)
    return path


def _video_arrays(rng: np.random.Generator, label: int, frames: int, clips: int, size: tuple[int, int]) -> dict:
    height, width = size
    texture = rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8)
    steps = rng.normal(0, 3.0, (frames * clips, 2)) if label else np.full((frames * clips, 2), 0.5)
    offsets = np.cumsum(steps, axis=0).round().astype(int) % height
    images = np.stack([texture[y : y + height, x : x + width] for y, x in offsets])
    n = len(images)
    clip_index = np.repeat(np.arange(clips, dtype=np.int32), frames)
    valid = np.append(clip_index[1:] == clip_index[:-1], False)
    # flow[t] moves frame t to t+1: the texture's next step, as (x, y).
    flow = np.zeros((n, height, width, 2), np.float16)
    flow[valid] = np.broadcast_to(np.roll(steps, -1, axis=0)[valid, None, None, ::-1], (int(valid.sum()), height, width, 2))
    landmarks = rng.uniform(0, min(size), (1, n, schema.LANDMARKS, 2)).astype(np.float32)  # as dlib gives them
    table, fields = schema.track_table(
        np.arange(n) * 3, clip_index, np.arange(n) * 3 / 25.0, np.ones((1, n), bool),
        np.tile([0.0, 0.0, width, height], (1, n, 1)), landmarks, {schema.FRAMES: np.tile(np.eye(2, 3), (1, n, 1, 1))},
    )
    return {
        schema.FRAMES: schema.images_array(schema.FRAMES, images[None], per_face=True),
        schema.FLOW: schema.flow_array(flow[None], per_face=True),
        schema.TRACK: schema.track_array(table, fields),
    }
