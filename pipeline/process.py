"""One video's work, run on a Dask worker: stages in order, arrays to the store, a small
summary back. Every failure is caught here, once, and recorded as the video's status."""

from __future__ import annotations

import base64
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

from feature_store import FeatureStore, fingerprint, schema
from feature_store.schema import ArrayData, Fingerprint, IndexRow, Status, VideoEntry
from pipeline.profiles import Profile
from pipeline.sources.base import VideoRecord
from pipeline.watchdog import Watchdog
from stages import decode, faces, flow
from stages.errors import NoFace, StoreError, Unreadable, VideoError, VideoTimeout

ALL_STAGES = ("decode", "faces", "flow")


@dataclass(frozen=True)
class WorkItem:
    record: VideoRecord
    key: str
    stages: tuple[str, ...]  # ALL_STAGES, or ("flow",) to recompute flow from stored crops
    run_id: str


@dataclass(frozen=True)
class VideoOutcome:
    row: IndexRow | None  # the video's index row; None when the store failed
    stages: tuple[str, ...]  # the stages this task ran, in order
    store_error: str = ""

    @property
    def status(self) -> Status:
        return self.row.status

    @property
    def error(self) -> str:
        return self.row.entry.error


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
    process ends, the one sure way to stop a thread stuck in a decoder (pipeline/watchdog.py).
    A store that cannot be opened or written comes back as the outcome's `store_error`, for
    the client to stop the run: it is not the video's fault."""
    # One video per worker process: OpenCV's own threads would only contend with the others.
    cv2.setNumThreads(1)
    try:
        return _process(item, FeatureStore(store_url), profile, timeout_s)
    except StoreError as exc:
        return VideoOutcome(None, (), store_error=str(exc))


def _process(item: WorkItem, store: FeatureStore, profile: Profile, timeout_s: float | None) -> VideoOutcome:
    found = store.entries([item.key]).get(item.key)
    if found is not None and found[0].run_id == item.run_id:
        # A second try of this task in this run: its worker died after the video was recorded
        # (a timeout ends the worker on purpose). The record stands.
        return VideoOutcome(IndexRow(item.key, *found), ())
    stored = found[0] if found else None
    trace = Trace()
    with Watchdog(timeout_s, functools.partial(_record_timeout, store, item, profile, timeout_s, trace)):
        arrays, entry, keep_others = _compute(store, stored, item, profile, trace)
    write = store.update_video if keep_others else store.write_video
    with trace.step("write"):
        written = write(item.key, entry, arrays, chunk_frames=chunk_frames(profile))
    timings = {**(stored.timings_s if keep_others else {}), **trace.timings_s}
    # The worker's peak memory so far: what a benchmark or a cluster operator sizes workers by.
    peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    row = store.update_entry(item.key, written.entry.replace(timings_s=timings, worker_peak_rss_mb=peak_rss_mb))
    return VideoOutcome(row, trace.stages)


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


def _compute(store: FeatureStore, stored: VideoEntry | None, item: WorkItem, profile: Profile, trace: Trace):
    """The arrays and entry to store, and whether the video's other arrays stay."""
    try:
        if item.stages == ("flow",) and stored is not None:
            return *_flow_from_crops(store, stored, item, profile, trace), True
        return *_compute_all(item, profile, trace), False
    except StoreError:
        raise  # the store's fault, not the video's: the run stops (pipeline/run.py)
    except VideoError as exc:
        status = Status.NO_FACE if isinstance(exc, NoFace) else Status.FAILED
        return {}, base_entry(item, profile, status, f"{exc.reason}: {exc}", trace.fingerprint), False
    except Exception as exc:  # noqa: BLE001 - an unforeseen input must not end the run
        return {}, base_entry(item, profile, Status.FAILED, f"error: {type(exc).__name__}: {exc}", trace.fingerprint), False


def _compute_all(item: WorkItem, profile: Profile, trace: Trace) -> tuple[dict[str, ArrayData], VideoEntry]:
    record = item.record
    with trace.step("decode"):
        decoded = decode.decode_clips(record.path, profile.sampling, profile.decode)
    # Hashed once it decodes: a broken file is recorded by size and mtime alone, never read twice.
    with trace.step("fingerprint"):
        try:
            trace.fingerprint = fingerprint.hashed(record.path)
        except OSError as exc:
            raise Unreadable(f"cannot read the file: {exc.strerror or exc}") from exc
    n = len(decoded.frame_index)
    tracks = ()
    if profile.needs_face:
        with trace.step("faces"):
            try:
                tracks = faces.tracks(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, profile.faces)
            except NoFace as exc:
                raise NoFace(f"{exc} ({n} frames sampled)") from None
    face = tracks[0] if tracks else None
    with trace.step("crop"):
        arrays, affines, first_affines = {}, {}, None
        for position, config in enumerate(profile.crops):
            name = schema.frames_name(position, config.mode)
            per_face = config.needs_face
            crops = [faces.crop(decoded.frames_thw3, track, decoded.clip_index, config) for track in (tracks if per_face else [None])]
            arrays[name] = schema.images_array(name, np.stack([c.frames for c in crops]) if per_face else crops[0].frames, per_face)
            affines[name] = np.stack([c.affine_t23 for c in crops])
            first_affines = affines[name] if position == 0 else first_affines
        thumbnail = _thumbnail(decoded.frames_thw3[0])
    flow_backend, n_flows = None, 0
    if profile.flow:
        with trace.step("flow"):
            frames_f = arrays[schema.FRAMES].data
            per_face = arrays[schema.FRAMES].dims[0] == schema.FACE
            flow_f, flow_backend, n_flows = _flow(frames_f if per_face else frames_f[None], decoded.clip_index, profile)
        arrays[schema.FLOW] = schema.flow_array(flow_f if per_face else flow_f[0], per_face)
    faces_t = tracks or (None,)
    table, fields = schema.track_table(
        decoded.frame_index, decoded.clip_index, decoded.timestamps_s,
        np.stack([t.face_found if t else np.zeros(n, bool) for t in faces_t]),
        np.stack([t.boxes_xyxy if t else np.full((n, 4), np.nan, np.float32) for t in faces_t]),
        np.stack([faces.landmarks_in_crop(t.landmarks_xy, first_affines[i if len(first_affines) > 1 else 0]) if t
                  else np.full((n, schema.LANDMARKS, 2), np.nan) for i, t in enumerate(faces_t)]),
        affines,
    )
    arrays[schema.TRACK] = schema.track_array(table, fields)
    entry = base_entry(item, profile, Status.DONE, "", trace.fingerprint).replace(
        clip_lengths=tuple(int(c) for c in np.bincount(decoded.clip_index)),
        video={**dataclasses.asdict(decoded.info), "frame_scale": decoded.frame_scale},
        thumbnail=thumbnail,
        warnings=tuple(decoded.warnings),
        backends={"decode": f"pyav-{av.__version__}", "detector": f"dlib-{profile.faces.detector}" if face else None, "flow": flow_backend},
        counts=schema.Counts(frames=n, flows=n_flows, face_found=int(face.face_found.sum()) if face else 0, faces=len(tracks)),
    )
    return arrays, entry


def _flow(frames_fthw3: np.ndarray, clip_index: np.ndarray, profile: Profile) -> tuple[np.ndarray, str, int]:
    """Frame-aligned flow of each face's crops: (F, T, H, W, 2), the backend, flows a face."""
    pairs = flow.consecutive_pairs(clip_index)
    results = [flow.compute(crops, pairs, profile.flow) for crops in frames_fthw3]
    aligned = np.stack([schema.frame_aligned_flow(result.flow_fhw2, pairs, len(clip_index)) for result in results])
    return aligned, results[0].backend, len(pairs)


def _flow_from_crops(store: FeatureStore, stored: VideoEntry, item: WorkItem, profile: Profile,
                     trace: Trace) -> tuple[dict[str, ArrayData], VideoEntry]:
    """Flow from the stored crops: no decoding, no detection."""
    with trace.step("flow"):
        video = store.open_video(item.key)
        frames = video[schema.FRAMES]
        per_face = frames.metadata.dimension_names[0] == schema.FACE
        crops = frames[...] if per_face else frames[...][None]
        clip_index = np.repeat(np.arange(len(stored.clip_lengths)), stored.clip_lengths)
        flow_f, backend, _ = _flow(crops, clip_index, profile)
    entry = base_entry(item, profile, Status.DONE, "", stored.fingerprint)
    entry = stored.replace(**{name: getattr(entry, name) for name in ("config", "stage_keys", "updated_at", "run_id", "profile")},
                           backends={**stored.backends, "flow": backend})
    return {schema.FLOW: schema.flow_array(flow_f if per_face else flow_f[0], per_face)}, entry


def _record_timeout(store: FeatureStore, item: WorkItem, profile: Profile, timeout_s: float, trace: Trace) -> None:
    error = f"{VideoTimeout.reason}: {trace.current} still running after {timeout_s:g} s"
    store.write_video(item.key, base_entry(item, profile, Status.FAILED, error, trace.fingerprint), {})


def _thumbnail(frame_hw3: np.ndarray) -> dict:
    """The first frame, small, as a JPEG in the entry: for contact sheets, without an array
    (and two files) a video."""
    image, scale = decode.thumbnail(frame_hw3)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return {"jpeg_base64": base64.b64encode(jpeg.tobytes()).decode("ascii"), "scale": scale}


def base_entry(item: WorkItem, profile: Profile, status: Status, error: str, source: Fingerprint | None = None) -> VideoEntry:
    """What every stored video records, whatever its status. Without a content hash (a
    failure before one was taken) the file's size and mtime are kept, so that the plan still
    tells whether the file changed since."""
    record = item.record
    return VideoEntry(
        video_id=record.video_id, label=record.label, split=record.split, dataset=record.dataset,
        source_path=record.path, extra=record.extra, status=status, error=error, profile=profile.name,
        config=profile.to_dict(), fingerprint=source or fingerprint.unhashed(record.path),
        stage_keys=profile.stage_keys(source.sha256) if source else None, updated_at=_now(), run_id=item.run_id,
    )


def chunk_frames(profile: Profile) -> int:
    """Frames of an inner chunk: one clip, what a loader reads at once."""
    return profile.sampling.clip_length


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

