"""One video's work, run on a Dask worker: stages in order, arrays to the store, a small
summary back. Every failure is caught here, once, and recorded as the video's status."""

from __future__ import annotations

import dataclasses
import datetime
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass

import av
import cv2
import numpy as np

from feature_store import FeatureStore
from feature_store.manifest import row_from_attrs
from pipeline.profiles import Profile
from pipeline.sources.base import Fingerprint, VideoRecord, fingerprint
from stages import decode, faces, flow
from stages.errors import NoFace, VideoError

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
    stages: tuple[str, ...]
    row: dict  # the video's manifest row


def process_video(item: WorkItem, store_url: str, profile: Profile) -> VideoOutcome:
    # One video per worker process: OpenCV's own threads would only contend with the others.
    cv2.setNumThreads(1)
    store = FeatureStore(store_url)
    try:
        if item.stages == ("flow",):
            attrs = _recompute_flow(store, item, profile)
        else:
            attrs = _compute_all(store, item, profile)
    except VideoError as exc:
        status = "no_face" if isinstance(exc, NoFace) else "failed"
        attrs = record_attrs(item, profile, status, f"{exc.reason}: {exc}")
        store.write_video(item.key, {}, attrs)
    except Exception as exc:  # noqa: BLE001 - an unforeseen input must not end the run
        attrs = record_attrs(item, profile, "failed", f"error: {type(exc).__name__}: {exc}")
        store.write_video(item.key, {}, attrs)
    stages = tuple(
        stage for stage in item.stages
        if attrs["status"] == "done" and (stage != "faces" or profile.needs_face) and (stage != "flow" or profile.flow)
    )
    return VideoOutcome(item.key, attrs["status"], attrs["error"], stages, row_from_attrs(item.key, attrs))


def _compute_all(store: FeatureStore, item: WorkItem, profile: Profile) -> dict:
    record = item.record
    timings: dict[str, float] = {}
    with _timed(timings, "fingerprint"):
        source_fingerprint = fingerprint(record.path)
    keys = profile.stage_keys(source_fingerprint.sha256)
    with _timed(timings, "decode"):
        decoded = decode.decode_clips(record.path, profile.sampling, profile.decode)
    n = len(decoded.frame_index)
    face = None
    if profile.needs_face:
        with _timed(timings, "faces"):
            try:
                face = faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, profile.faces)
            except NoFace as exc:
                raise NoFace(f"{exc} ({n} frames sampled)") from None
    with _timed(timings, "crop"):
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
        with _timed(timings, "flow"):
            pairs = flow.consecutive_pairs(decoded.clip_index)
            result = flow.compute(crops[0].frames, pairs, profile.flow)
        arrays["flow"], arrays["flow_pairs"], flow_backend = result.flow_fhw2, pairs, result.backend
    attrs = record_attrs(item, profile, "done", "", source_fingerprint, keys)
    attrs.update(
        video={**dataclasses.asdict(decoded.info), "frame_scale": decoded.frame_scale, "thumbnail_scale": thumbnail_scale},
        backends={"decode": f"pyav-{av.__version__}", "detector": f"dlib-{profile.faces.detector}" if face else None, "flow": flow_backend},
        counts={"frames": n, "flows": len(arrays.get("flow", ())), "face_found": int(arrays["face_found"].sum())},
    )
    with _timed(timings, "write"):
        nbytes = store.write_video(item.key, arrays, attrs, chunk_frames=_chunk_frames(profile))
    # The worker's peak memory so far: what a benchmark or a cluster operator needs to size workers.
    peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    store.update_attrs(item.key, {"timings_s": timings, "bytes_stored": nbytes, "worker_peak_rss_mb": peak_rss_mb})
    return {**attrs, "timings_s": timings}


def _recompute_flow(store: FeatureStore, item: WorkItem, profile: Profile) -> dict:
    """Flow from the stored crops: no decoding, no detection."""
    old = store.attrs(item.key)
    timings = dict(old.get("timings_s", {}))
    with _timed(timings, "flow"):
        frames, clip_index = store.read(item.key, "frames"), store.read(item.key, "clip_index")
        pairs = flow.consecutive_pairs(clip_index)
        result = flow.compute(frames, pairs, profile.flow)
    keys = profile.stage_keys(old["fingerprint"]["sha256"])
    attrs = {
        "stage_keys": keys,
        "config": {**old["config"], "flow": profile.flow.to_dict()},
        "backends": {**old["backends"], "flow": result.backend},
        "counts": {**old["counts"], "flows": len(pairs)},
        "timings_s": timings,
        "updated_at": _now(),
        "run_id": item.run_id,
    }
    store.update_video(item.key, {"flow": result.flow_fhw2, "flow_pairs": pairs}, attrs, chunk_frames=_chunk_frames(profile))
    return {**old, **attrs}


def record_attrs(item: WorkItem, profile: Profile, status: str, error: str,
                 source_fingerprint: Fingerprint | None = None, keys: dict | None = None) -> dict:
    """The attributes every stored video has, whatever its status."""
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
        "fingerprint": dataclasses.asdict(source_fingerprint) if source_fingerprint else None,
        "stage_keys": keys,
        "updated_at": _now(),
        "run_id": item.run_id,
    }


def _chunk_frames(profile: Profile) -> int:
    # One chunk a clip when clips are long enough to be worth reading alone.
    return profile.sampling.clip_length if profile.sampling.clip_length >= 8 else 16


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _timed(timings: dict[str, float], name: str):
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 4)
