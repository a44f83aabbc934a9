"""Read-side commands: the status of a store and a video's contact sheet."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from feature_store import FeatureStore, manifest, video_key
from feature_store.schema import FLOW, FRAMES, LABEL_NAMES, UNLABELED, IndexRow, Status, boxes_of
from pipeline.sources.base import SPLITS
from pipeline.terminal import printable
from stages.errors import ConfigError, StoreError
from viz.contact_sheet import contact_sheet


def open_existing_store(url: str, mode: str = "r") -> FeatureStore:
    if "://" not in url and not (Path(url) / "zarr.json").is_file():
        raise ConfigError(f"--store {url}: not a dfprep store (no zarr.json there)")
    try:
        return FeatureStore(url, mode=mode)
    except StoreError as exc:
        raise ConfigError(f"--store {url}: {exc}") from exc


def status_rows(url: str, rebuild: bool = False) -> list[IndexRow]:
    """The index; with `rebuild`, made anew from the groups and saved, holding the store's
    lock so that no run writes it meanwhile."""
    if not rebuild:
        return manifest.load(open_existing_store(url))
    store = open_existing_store(url, mode="a")
    with store.lock():
        return manifest.rebuild(store)


def status_text(rows: list[IndexRow]) -> str:
    counts = Counter(row.status for row in rows)
    by_label = Counter((row.entry.split, row.entry.label) for row in rows if row.status is Status.DONE)
    lines = [f"{len(rows)} videos: " + ", ".join(f"{status} {counts[status]}" for status in Status)]
    for split in SPLITS:
        labels = ", ".join(f"{by_label[(split, label)]} {name}" for label, name in LABEL_NAMES.items()
                           if label != UNLABELED or by_label[(split, label)])
        lines.append(f"  {split:<6} done: {labels}")
    failures = [row for row in rows if row.status is not Status.DONE]
    if failures:
        lines.append("not done:")
        lines += [f"  {row.status:<8} {printable(row.video_id)}: {printable(row.entry.error)}" for row in failures]
    return "\n".join(lines)


def write_contact_sheet(url: str, video_id: str, out: str) -> Path:
    store = open_existing_store(url)
    key = video_key(video_id)
    entry = store.entry(key)
    if entry is None:
        raise ConfigError(f"VIDEO_ID {video_id}: not in store {url}")
    if entry.status is not Status.DONE:
        raise ConfigError(f"VIDEO_ID {video_id}: status {entry.status} ({entry.error}), nothing to show")
    video = store.open_video(key)
    track = video.track()
    frames, flow = video[FRAMES], video[FLOW] if FLOW in video else None
    clip_index = track["clip_index"][0].astype(int)
    flow_valid = track["flow_valid"][0].astype(bool)
    thumbnail = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(entry.thumbnail["jpeg_base64"]), np.uint8),
                                          cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image = contact_sheet(
        frames_thw3=frames[...],
        clip_index=clip_index,
        flow_fhw2=None if flow is None else flow[...][..., flow_valid, :, :, :],
        flow_pairs=None if flow is None else np.stack([np.flatnonzero(flow_valid), np.flatnonzero(flow_valid) + 1], axis=1),
        boxes_xyxy=boxes_of(track),
        face_found=track["face_found"].astype(bool),
        thumbnail_hw3=thumbnail,
        thumbnail_scale=entry.thumbnail["scale"],
        title=f"{video_id}  label {entry.label} ({LABEL_NAMES.get(entry.label, entry.label)})  split {entry.split}  "
              f"main face {entry.counts.face_found}/{entry.counts.frames}" + (f", {entry.counts.faces} tracks" if entry.counts.faces > 1 else ""),
    )
    out_path = Path(out)
    if not cv2.imwrite(str(out_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise ConfigError(f"--out {out}: cannot write a PNG there")
    return out_path
