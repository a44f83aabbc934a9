"""One video's work, run on a Dask worker: stages in order, arrays to the store, a small
summary back. Every failure is caught here, once, and recorded as the video's status."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import resource
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import av
import cv2
import numpy as np

from feature_store import FeatureStore
from feature_store.manifest import row_from_attrs
from pipeline.profiles import Profile
from pipeline.sources.base import Fingerprint, VideoRecord, fingerprint
from pipeline.watchdog import Watchdog
from stages import decode, faces, flow
from stages.errors import NoFace, Unreadable, VideoError, VideoTimeout

ALL_STAGES = ("decode", "faces", "flow")


@dataclass(frozen=True)
class WorkItem:
    record: VideoRecord
    key: str
    stages: tuple[str, ...]  # ALL_STAGES, or ("flow",) to recompute flow from stored crops
    run_id: str


@dataclass(frozen=True)
class VideoOutcome:
    key: str
    status: str  # done | no_face | failed
    error: str
    stages: tuple[str, ...]  # the stages this task ran, in order
    row: dict  # the video's manifest row


@dataclass
class Trace:
    """What a video's task has done so far: seconds per step, the step under way, and the
    source file's fingerprint once taken. A timeout record is written from it."""

    timings_s: dict[str, float] = field(default_factory=dict)
    current: str = "start"
    fingerprint: Fingerprint | None = None

    @contextmanager
    def step(self, name: str):
        self.current = name
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[name] = round(time.perf_counter() - started, 4)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(stage for stage in ALL_STAGES if stage in self.timings_s)


def process_video(item: WorkItem, store_url: str, profile: Profile, timeout_s: float | None = None) -> VideoOutcome:
    """Run the item's stages and store the result. `timeout_s` bounds reading and computing
    (not the final write): past it the video is recorded as `failed: timeout` and this worker
    process ends, the one sure way to stop a thread stuck in a decoder (pipeline/watchdog.py)."""
    # One video per worker process: OpenCV's own threads would only contend with the others.
    cv2.setNumThreads(1)
    store = FeatureStore(store_url)
    stored = store.attrs(item.key)
    if stored is not None and stored.get("run_id") == item.run_id:
        # A second try of this task in this run: its worker died after the video was recorded
        # (a timeout ends the worker on purpose). The record stands.
        return _outcome(item.key, stored, ())
    trace = Trace()
    with Watchdog(timeout_s, functools.partial(_record_timeout, store, item, profile, timeout_s, trace)):
        arrays, attrs, keep_others = _compute(store, stored, item, profile, trace)
    write = store.update_video if keep_others else store.write_video
    with trace.step("write"):
        nbytes = write(item.key, arrays, attrs, chunk_frames=_chunk_frames(profile))
    timings = {**(stored.get("timings_s", {}) if keep_others else {}), **trace.timings_s}
    # The worker's peak memory so far: what a benchmark or a cluster operator sizes workers by.
    peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    store.update_attrs(item.key, {"timings_s": timings, "bytes_stored": nbytes, "worker_peak_rss_mb": peak_rss_mb})
    return _outcome(item.key, attrs, trace.stages)


@contextmanager
def parent_of_forked_workers(profile: Profile):
    """This process ready to fork workers for the profile: its models loaded, for the children
    to inherit; OpenCV's thread pool emptied while children may fork (a local cluster
    restarts dead workers at any time), since a child that inherits a pool without its
    threads hangs or crashes at its first OpenCV call; and every child made to end with it."""
    global _forking_parent
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    if profile.needs_face:
        faces.load_models(profile.faces)
    _forking_parent = os.getpid()
    try:
        yield
    finally:
        _forking_parent = None
        cv2.setNumThreads(threads)


_forking_parent: int | None = None


def _end_with_the_forking_parent() -> None:
    """In a child forked under `parent_of_forked_workers`: exit once the parent is gone. Dask's
    own check, a pipe the parent holds open, fails under fork: workers forked side by side
    inherit each other's pipe ends and keep each other alive after a `kill -9` of the client."""
    global _forking_parent
    parent, _forking_parent = _forking_parent, None
    if parent is None:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="dfprep-parent-watch", daemon=True).start()


os.register_at_fork(after_in_child=_end_with_the_forking_parent)


def _compute(store: FeatureStore, stored: dict | None, item: WorkItem, profile: Profile, trace: Trace):
    """The arrays and attributes to store, and whether the video's other arrays stay."""
    try:
        if item.stages == ("flow",) and stored is not None:
            return *_flow_from_crops(store, stored, item, profile, trace), True
        return *_compute_all(item, profile, trace), False
    except VideoError as exc:
        status = "no_face" if isinstance(exc, NoFace) else "failed"
        return {}, record_attrs(item, profile, status, f"{exc.reason}: {exc}", trace.fingerprint), False
    except Exception as exc:  # noqa: BLE001 - an unforeseen input must not end the run
        return {}, record_attrs(item, profile, "failed", f"error: {type(exc).__name__}: {exc}", trace.fingerprint), False


def _compute_all(item: WorkItem, profile: Profile, trace: Trace) -> tuple[dict, dict]:
    record = item.record
    with trace.step("decode"):
        decoded = decode.decode_clips(record.path, profile.sampling, profile.decode)
    # Hashed once it decodes: a broken file is recorded by size and mtime alone, never read twice.
    with trace.step("fingerprint"):
        try:
            trace.fingerprint = fingerprint(record.path)
        except OSError as exc:
            raise Unreadable(f"cannot read the file: {exc.strerror or exc}") from exc
    n = len(decoded.frame_index)
    face = None
    if profile.needs_face:
        with trace.step("faces"):
            try:
                face = faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, profile.faces)
            except NoFace as exc:
                raise NoFace(f"{exc} ({n} frames sampled)") from None
    with trace.step("crop"):
        crops = [faces.crop(decoded.frames_thw3, face, decoded.clip_index, crop) for crop in profile.crops]
        thumbnail, thumbnail_scale = decode.thumbnail(decoded.frames_thw3[0])
    arrays = {
        "frames": crops[0].frames,
        "frame_index": decoded.frame_index,
        "clip_index": decoded.clip_index,
        "timestamps_s": decoded.timestamps_s,
        "crop_affine": crops[0].affine_t23,
        "boxes": face.boxes_xyxy if face else np.full((n, 4), np.nan, np.float32),
        "face_found": face.face_found if face else np.zeros(n, bool),
        "landmarks": (
            faces.landmarks_in_crop(face.landmarks_xy, crops[0].affine_t23).astype(np.float32)
            if face else np.full((n, 68, 2), np.nan, np.float32)
        ),
        "thumbnail": thumbnail,
    }
    for crop, config in zip(crops[1:], profile.crops[1:]):
        arrays[f"frames_{config.mode}"] = crop.frames
        arrays[f"crop_affine_{config.mode}"] = crop.affine_t23
    flow_backend = None
    if profile.flow:
        with trace.step("flow"):
            pairs = flow.consecutive_pairs(decoded.clip_index)
            result = flow.compute(crops[0].frames, pairs, profile.flow)
        arrays["flow"], arrays["flow_pairs"], flow_backend = result.flow_fhw2, pairs, result.backend
    attrs = record_attrs(item, profile, "done", "", trace.fingerprint)
    attrs.update(
        video={**dataclasses.asdict(decoded.info), "frame_scale": decoded.frame_scale, "thumbnail_scale": thumbnail_scale},
        backends={"decode": f"pyav-{av.__version__}", "detector": f"dlib-{profile.faces.detector}" if face else None, "flow": flow_backend},
        counts={"frames": n, "flows": len(arrays.get("flow", ())), "face_found": int(arrays["face_found"].sum())},
    )
    return arrays, attrs


def _flow_from_crops(store: FeatureStore, stored: dict, item: WorkItem, profile: Profile, trace: Trace) -> tuple[dict, dict]:
    """Flow from the stored crops: no decoding, no detection."""
    with trace.step("flow"):
        frames, clip_index = store.read(item.key, "frames"), store.read(item.key, "clip_index")
        pairs = flow.consecutive_pairs(clip_index)
        result = flow.compute(frames, pairs, profile.flow)
    attrs = {**stored, **record_attrs(item, profile, "done", "", Fingerprint(**stored["fingerprint"]))}
    attrs["backends"] = {**stored["backends"], "flow": result.backend}
    attrs["counts"] = {**stored["counts"], "flows": len(pairs)}
    return {"flow": result.flow_fhw2, "flow_pairs": pairs}, attrs


def _record_timeout(store: FeatureStore, item: WorkItem, profile: Profile, timeout_s: float, trace: Trace) -> None:
    error = f"{VideoTimeout.reason}: {trace.current} still running after {timeout_s:g} s"
    store.write_video(item.key, {}, record_attrs(item, profile, "failed", error, trace.fingerprint))


def _outcome(key: str, attrs: dict, stages: tuple[str, ...]) -> VideoOutcome:
    return VideoOutcome(key, attrs["status"], attrs["error"], stages, row_from_attrs(key, attrs))


def record_attrs(item: WorkItem, profile: Profile, status: str, error: str, source_fingerprint: Fingerprint | None = None) -> dict:
    """The attributes every stored video has, whatever its status. Without a content hash (a
    failure before one was taken) the file's size and mtime are kept, so that the plan still
    tells whether the file changed since."""
    record = item.record
    return {
        "video_id": record.video_id,
        "label": record.label,
        "split": record.split,
        "dataset": record.dataset,
        "source_path": record.path,
        "extra": record.extra,
        "status": status,
        "error": error,
        "profile": profile.name,
        "config": profile.to_dict(),
        "fingerprint": dataclasses.asdict(source_fingerprint) if source_fingerprint else _unhashed(record.path),
        "stage_keys": profile.stage_keys(source_fingerprint.sha256) if source_fingerprint else None,
        "updated_at": _now(),
        "run_id": item.run_id,
    }


def file_stat(path: str) -> os.stat_result:
    """The file's stat, or the link's own where a link points nowhere: mended later, it then
    counts as a changed file."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return os.lstat(path)


def size_and_mtime(path: str) -> dict:
    stat = file_stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _unhashed(path: str) -> dict | None:
    try:
        return {**size_and_mtime(path), "sha256": None}
    except OSError:
        return None


def _chunk_frames(profile: Profile) -> int:
    # One chunk a clip when clips are long enough to be worth reading alone.
    return profile.sampling.clip_length if profile.sampling.clip_length >= 8 else 16


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

