"""A PyTorch Dataset serving clips from the feature store, in the shape a detector declares."""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from feature_store import FeatureStore, manifest
from stages.config import StageConfig, check
from stages.flow import hsv_image

FLOW_MODES = ("none", "raw", "hsv")


@dataclass(frozen=True)
class ClipSpec(StageConfig):
    """What one sample holds: `clip_length` stored frames `frame_step` apart, resized to `size`
    (height, width; None keeps the stored size), with flow between them raw or HSV-coded."""

    clip_length: int = 16
    frame_step: int = 1
    size: tuple[int, int] | None = None
    flow: str = "none"
    frames_array: str = "frames"
    # Flow magnitude (crop pixels) shown at full brightness; None scales each field to its maximum.
    hsv_max: float | None = None

    def __post_init__(self):
        check(self.clip_length >= 1, "clip_length", self.clip_length, "must be >= 1")
        check(self.frame_step >= 1, "frame_step", self.frame_step, "must be >= 1")
        check(self.flow in FLOW_MODES, "flow", self.flow, f"allowed: {', '.join(FLOW_MODES)}")
        check(self.flow == "none" or self.frame_step == 1, "frame_step", self.frame_step,
              "must be 1 when flow is served (the store holds flow between neighbouring stored frames)")


class StoreClipDataset(torch.utils.data.Dataset):
    """Every non-overlapping window of `spec.clip_length` frames inside each stored clip of the
    `done` videos of the given splits. Items are dicts:

    - `frames` uint8 (L, 3, H, W)
    - `flow` float32 (L-1, 2, H, W) for raw, uint8 (L-1, 3, H, W) for hsv; absent for none
    - `label` int64 (0 real, 1 fake), `video_id` str, `frame_index` int64 (L,) source frames

    Videos with no window long enough are listed in `excluded` with the reason, never
    dropped silently. Safe with DataLoader(num_workers>0): each process opens the store itself.
    """

    def __init__(self, store_url: str, spec: ClipSpec, splits: tuple[str, ...] | None = ("train",)):
        self.store_url, self.spec = str(store_url), spec
        store = FeatureStore(self.store_url, mode="r")
        rows = manifest.read(store)
        if rows is None:
            rows = [manifest.row_from_attrs(key, attrs) for key, attrs in store.complete_attrs().items()]
        self.samples: list[tuple[str, int, int, int, str]] = []  # key, first frame, first flow, label, id
        self.excluded: list[tuple[str, str]] = []
        span = (spec.clip_length - 1) * spec.frame_step + 1
        for row in sorted(rows, key=lambda r: r["video_id"]):
            if row["status"] != "done" or (splits is not None and row["split"] not in splits):
                continue
            group = store.video(row["key"])
            if spec.frames_array not in group or (spec.flow != "none" and "flow" not in group):
                self.excluded.append((row["video_id"], f"no {spec.frames_array if spec.frames_array not in group else 'flow'} array"))
                continue
            clip_index = group["clip_index"][...]
            flow_starts = _flow_row_of_frame(group["flow_pairs"][...]) if spec.flow != "none" else {}
            windows = [
                (int(start), flow_starts.get(int(start), -1))
                for clip in np.unique(clip_index)
                for start in np.flatnonzero(clip_index == clip)[: max(0, np.sum(clip_index == clip) - span + 1) : span]
            ]
            if not windows:
                longest = int(np.bincount(clip_index).max())
                self.excluded.append((row["video_id"], f"longest clip has {longest} frames, a sample needs {span}"))
            for start, flow_start in windows:
                self.samples.append((row["key"], start, flow_start, int(row["label"]), row["video_id"]))
        self._opened: tuple[int, FeatureStore] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([sample[3] for sample in self.samples], np.int64)

    def __getitem__(self, index: int) -> dict:
        key, start, flow_start, label, video_id = self.samples[index]
        spec = self.spec
        group = self._store().root[f"videos/{key}"]
        stop = start + (spec.clip_length - 1) * spec.frame_step + 1
        frames = _resize_all(group[spec.frames_array][start:stop:spec.frame_step], spec.size)
        item = {
            "frames": torch.from_numpy(frames).permute(0, 3, 1, 2),
            "label": torch.tensor(label, dtype=torch.int64),
            "video_id": video_id,
            "frame_index": torch.from_numpy(group["frame_index"][start:stop:spec.frame_step].astype(np.int64)),
        }
        if spec.flow != "none":
            flow = group["flow"][flow_start : flow_start + spec.clip_length - 1].astype(np.float32)
            if spec.flow == "hsv":
                coded = np.stack([hsv_image(field, spec.hsv_max) for field in flow])
                item["flow"] = torch.from_numpy(_resize_all(coded, spec.size)).permute(0, 3, 1, 2)
            else:
                item["flow"] = torch.from_numpy(_resize_flow(flow, spec.size)).permute(0, 3, 1, 2)
        return item

    def _store(self) -> FeatureStore:
        # Opened once per process: DataLoader workers must not share the parent's handles.
        if self._opened is None or self._opened[0] != os.getpid():
            self._opened = (os.getpid(), FeatureStore(self.store_url, mode="r"))
        return self._opened[1]


def _flow_row_of_frame(pairs_f2: np.ndarray) -> dict[int, int]:
    return {int(a): row for row, (a, _) in enumerate(pairs_f2)}


def _resize_all(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or tuple(images.shape[1:3]) == tuple(size):
        return np.ascontiguousarray(images)
    return np.stack([cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA) for image in images])


def _resize_flow(flow: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize flow fields and scale the vectors with them: displacement is in pixels."""
    if size is None or tuple(flow.shape[1:3]) == tuple(size):
        return np.ascontiguousarray(flow)
    scale = np.array([size[1] / flow.shape[2], size[0] / flow.shape[1]], np.float32)
    return np.stack([cv2.resize(field, (size[1], size[0]), interpolation=cv2.INTER_AREA) * scale for field in flow])
