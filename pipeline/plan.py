"""Compare the records with the store: what each video needs, and nothing more."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from feature_store import FeatureStore, video_key
from pipeline.process import ALL_STAGES, WorkItem, file_stat, size_and_mtime
from pipeline.profiles import Profile
from pipeline.sources.base import VideoRecord, fingerprint

# What the store keeps of a record, beside the features.
RECORD_ATTRS = ("label", "split", "dataset", "extra")


@dataclass(frozen=True)
class Plan:
    work: list[WorkItem]
    unchanged: dict[str, dict]  # key -> stored attributes, for videos needing no work
    relabelled: int  # unchanged videos whose label, split, extra or path were brought up to date


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
        relabelled += any(attrs.get(name) != value for name, value in current.items())
        # Same content under a new mtime (a copy, a touch): keep the new one, or every later
        # run would hash the file again.
        current["fingerprint"] = {**attrs["fingerprint"], **size_and_mtime(record.path)}
        changes = {name: value for name, value in current.items() if attrs.get(name) != value}
        if changes:
            store.update_attrs(key, changes)
            attrs = {**attrs, **changes}
        unchanged[key] = attrs
    return Plan(_largest_first(work), unchanged, relabelled)


def _largest_first(work: list[WorkItem]) -> list[WorkItem]:
    """Big files first (the scheduler starts tasks in this order): the last videos of a run
    are then short ones, and no worker is left alone with a long one at the end."""

    def size(item: WorkItem) -> int:
        try:
            return file_stat(item.record.path).st_size
        except OSError:
            return 0

    return sorted(work, key=size, reverse=True)


def stages_needed(record: VideoRecord, attrs: dict, profile: Profile, retry_failed: bool) -> tuple[str, ...]:
    """The stages a stored video must rerun: all when its file or the decode/faces parameters
    changed, flow alone when only flow parameters did, none otherwise. Failures rerun only
    when asked to or when their file changed."""
    if not same_file(record.path, attrs.get("fingerprint")):
        return ALL_STAGES
    if attrs["status"] == "failed":
        return ALL_STAGES if retry_failed else ()
    expected = profile.stage_keys(attrs["fingerprint"]["sha256"])
    stored = attrs.get("stage_keys") or {}
    if stored.get("decode") != expected["decode"] or stored.get("faces") != expected["faces"]:
        return ALL_STAGES
    if attrs["status"] == "no_face" or stored.get("flow") == expected["flow"]:
        return ()
    return ("flow",) if profile.flow else ALL_STAGES


def same_file(path: str, stored: dict | None) -> bool:
    """Whether the file is still the one fingerprinted: the same size and mtime or, when
    those differ, the same content hash. Only regular files are hashed here: reading a FIFO
    or a device would block the plan, which no time limit covers."""
    if not stored:
        return False
    try:
        now = file_stat(path)
    except OSError:
        return False
    if (now.st_size, now.st_mtime_ns) == (stored["size"], stored["mtime_ns"]):
        return True
    if stored["sha256"] is None or not stat.S_ISREG(now.st_mode):
        return False
    try:
        return fingerprint(path).sha256 == stored["sha256"]
    except OSError:
        return False
