"""Compare the records with the store: what each video needs, and nothing more."""

from __future__ import annotations

import os
from dataclasses import dataclass

from feature_store import FeatureStore, video_key
from pipeline.process import ALL_STAGES, WorkItem
from pipeline.profiles import Profile
from pipeline.sources.base import VideoRecord, fingerprint

# What the store keeps of a record, beside the features.
RECORD_ATTRS = ("label", "split", "dataset", "extra")


@dataclass(frozen=True)
class Plan:
    work: list[WorkItem]
    unchanged: dict[str, dict]  # key -> stored attributes, for videos needing no work
    relabelled: int  # unchanged videos whose label, split or extra were brought up to date


def plan(records: list[VideoRecord], store: FeatureStore, profile: Profile, *,
         force: bool = False, retry_failed: bool = False, run_id: str = "") -> Plan:
    work, unchanged, relabelled = [], {}, 0
    for record in records:
        key = video_key(record.video_id)
        attrs = store.attrs(key)
        stages = ALL_STAGES if force or attrs is None else stages_needed(record, attrs, profile, retry_failed)
        if stages:
            work.append(WorkItem(record, key, stages, run_id))
            continue
        current = {name: getattr(record, name) for name in RECORD_ATTRS} | {"source_path": record.path}
        if any(attrs.get(name) != value for name, value in current.items()):
            store.update_attrs(key, current)
            attrs = {**attrs, **current}
            relabelled += 1
        unchanged[key] = attrs
    return Plan(work, unchanged, relabelled)


def stages_needed(record: VideoRecord, attrs: dict, profile: Profile, retry_failed: bool) -> tuple[str, ...]:
    """The stages a stored video must rerun: all when its file or the decode/faces parameters
    changed, flow alone when only flow parameters did, none otherwise. Failures rerun only
    when asked to or when their file changed."""
    sha256 = _content_sha256(record.path, attrs.get("fingerprint"))
    if sha256 is None or sha256 != attrs["fingerprint"]["sha256"]:
        return ALL_STAGES
    expected = profile.stage_keys(sha256)
    stored = attrs.get("stage_keys") or {}
    if attrs["status"] == "failed":
        return ALL_STAGES if retry_failed or stored.get("decode") != expected["decode"] else ()
    if stored.get("decode") != expected["decode"] or stored.get("faces") != expected["faces"]:
        return ALL_STAGES
    if attrs["status"] == "no_face" or stored.get("flow") == expected["flow"]:
        return ()
    return ("flow",) if profile.flow else ALL_STAGES


def _content_sha256(path: str, stored: dict | None) -> str | None:
    """The file's content hash: taken from the store while size and mtime match, computed
    again when they do not (a copy or a touch changes mtime, not content)."""
    if not stored:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    if stat.st_size == stored["size"] and stat.st_mtime_ns == stored["mtime_ns"]:
        return stored["sha256"]
    return fingerprint(path).sha256
