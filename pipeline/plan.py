"""Compare the records with the store's index: what each video needs, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass

from feature_store import FeatureStore, fingerprint, video_key
from feature_store.schema import IndexRow, Status
from pipeline.process import ALL_STAGES, WorkItem
from pipeline.profiles import Profile
from pipeline.sources.base import VideoRecord


@dataclass(frozen=True)
class Plan:
    work: list[WorkItem]
    unchanged: dict[str, IndexRow]  # key -> index row, for videos needing no work
    relabelled: int  # unchanged videos whose label, split, extra or path were brought up to date


def plan(records: list[VideoRecord], rows: dict[str, IndexRow], store: FeatureStore, profile: Profile, *,
         force: bool = False, retry_failed: bool = False, run_id: str = "") -> Plan:
    """`rows` is the index by key: no group is opened but those of videos to relabel."""
    work, unchanged, relabelled = [], {}, 0
    for record in records:
        key = video_key(record.video_id)
        row = rows.get(key)
        stages = ALL_STAGES if force or row is None else stages_needed(record, row, profile, retry_failed)
        if stages:
            work.append(WorkItem(record, key, stages, run_id))
            continue
        entry = row.entry
        current = {"label": record.label, "split": record.split, "dataset": record.dataset, "extra": record.extra,
                   "source_path": record.path}
        relabelled += any(getattr(entry, name) != value for name, value in current.items())
        current["fingerprint"] = fingerprint.with_current_mtime(record.path, entry.fingerprint)
        changes = {name: value for name, value in current.items() if getattr(entry, name) != value}
        if changes:
            stored = store.entry(key)
            row = store.update_entry(key, stored.replace(**changes)) if stored else row
        unchanged[key] = row
    return Plan(_largest_first(work), unchanged, relabelled)


def _largest_first(work: list[WorkItem]) -> list[WorkItem]:
    """Big files first (the scheduler starts tasks in this order): the last videos of a run
    are then short ones, and no worker is left alone with a long one at the end."""

    def size(item: WorkItem) -> int:
        try:
            return fingerprint.file_stat(item.record.path).st_size
        except OSError:
            return 0

    return sorted(work, key=size, reverse=True)


def stages_needed(record: VideoRecord, row: IndexRow, profile: Profile, retry_failed: bool) -> tuple[str, ...]:
    """The stages a stored video must rerun: all when its file or the decode/faces parameters
    changed, flow alone when only flow parameters did, none otherwise. Failures rerun only
    when asked to or when their file changed."""
    entry = row.entry
    if not fingerprint.same_file(record.path, entry.fingerprint):
        return ALL_STAGES
    if entry.status is Status.FAILED:
        return ALL_STAGES if retry_failed else ()
    expected, stored = profile.stage_keys(entry.fingerprint.sha256), entry.stage_keys
    if stored is None or (stored.decode, stored.faces) != (expected.decode, expected.faces):
        return ALL_STAGES
    if entry.status is Status.NO_FACE or stored.flow == expected.flow:
        return ()
    return ("flow",) if profile.flow else ALL_STAGES
