"""Read-side commands: the status of a store and a video's contact sheet."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2

from feature_store import FeatureStore, manifest, video_key
from pipeline.terminal import printable
from stages.errors import ConfigError, StoreError
from viz.contact_sheet import contact_sheet


def open_existing_store(url: str) -> FeatureStore:
    if "://" not in url and not (Path(url) / "zarr.json").is_file():
        raise ConfigError(f"--store {url}: not a dfprep store (no zarr.json there)")
    try:
        return FeatureStore(url, mode="r")
    except StoreError as exc:
        raise ConfigError(f"--store {url}: {exc}") from exc


def status_rows(url: str, rebuild: bool = False) -> list[dict]:
    """The manifest's rows; `rebuild` first rewrites it from the groups, holding the store's
    lock so that a run's newer manifest is never overwritten."""
    store = open_existing_store(url)
    if rebuild:
        with store.lock():
            return manifest.rebuild(store)
    rows = manifest.read(store)
    return rows if rows is not None else manifest.rebuild(store)


def status_text(rows: list[dict]) -> str:
    counts = Counter(row["status"] for row in rows)
    by_label = Counter((row["split"], row["label"]) for row in rows if row["status"] == "done")
    lines = [f"{len(rows)} videos: " + ", ".join(f"{status} {counts[status]}" for status in ("done", "no_face", "failed"))]
    for split in ("train", "val", "test"):
        lines.append(f"  {split:<6} done: {by_label[(split, 0)]} real, {by_label[(split, 1)]} fake")
    failures = [row for row in rows if row["status"] != "done"]
    if failures:
        lines.append("not done:")
        lines += [f"  {row['status']:<8} {printable(row['video_id'])}: {printable(row['error'])}" for row in failures]
    return "\n".join(lines)


def write_contact_sheet(url: str, video_id: str, out: str) -> Path:
    store = open_existing_store(url)
    key = video_key(video_id)
    attrs = store.attrs(key)
    if attrs is None:
        raise ConfigError(f"VIDEO_ID {video_id}: not in store {url}")
    if attrs["status"] != "done":
        raise ConfigError(f"VIDEO_ID {video_id}: status {attrs['status']} ({attrs['error']}), nothing to show")
    group = store.video(key)
    has_flow = "flow" in group
    image = contact_sheet(
        frames_thw3=group["frames"][...],
        clip_index=group["clip_index"][...],
        flow_fhw2=group["flow"][...] if has_flow else None,
        flow_pairs=group["flow_pairs"][...] if has_flow else None,
        boxes_xyxy=group["boxes"][...],
        face_found=group["face_found"][...],
        thumbnail_hw3=group["thumbnail"][...],
        thumbnail_scale=attrs["video"]["thumbnail_scale"],
        title=f"{video_id}  label {attrs['label']} ({'fake' if attrs['label'] else 'real'})  split {attrs['split']}  "
              f"faces {attrs['counts']['face_found']}/{attrs['counts']['frames']}",
    )
    out_path = Path(out)
    if not cv2.imwrite(str(out_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise ConfigError(f"--out {out}: cannot write a PNG there")
    return out_path
