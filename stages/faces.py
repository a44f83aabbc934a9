"""Faces: dlib detection on a downscaled copy, a smoothed track a face, landmarks, and crops."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

from stages.config import StageConfig, check
from stages.errors import NoFace

# 2: every face track that is present often enough, not the main one only.
VERSION = 2
# Searching around a known face: the region spans this many face widths, shrunk so the face
# is this many pixels wide, comfortably above HOG's 80 px window.
_REGION_SPAN = 2.5
_REGION_FACE_PX = 100
CROP_MODES = ("box", "fixed", "align", "frame")

# Eye centres, nose tip and mouth corners on the 112x112 ArcFace template that
# FaceForensics++ / DeepfakeBench alignment uses.
ALIGN_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float64,
)


@dataclass(frozen=True)
class FacesConfig(StageConfig):
    detector: str = "hog"  # hog | cnn (dlib's mmod model)
    # Detection runs on a copy this wide: HOG's 80 px minimum face still holds for faces a
    # tenth of a 720p frame wide, and it is 17x cheaper than the full frame with upsampling.
    detect_width: int = 640
    upsample: int = 0
    # Source frames between detections inside a clip; boxes in between are interpolated.
    detect_interval: int = 4
    # Gaussian smoothing of box centre and size over time, in source frames. Spread-out
    # frames (far apart in time) are left unsmoothed by construction.
    smooth_sigma: float = 2.0
    landmarks: bool = True
    # Tracks kept, main first; 0 keeps every track present often enough.
    max_faces: int = 0
    # A track other than the main one is kept when detected in this share of the searched
    # frames. A face the linker splits into pieces yields pieces that follow one another in
    # time, so at most one piece of it covers more than half: no face is kept twice.
    min_presence: float = 0.5

    def __post_init__(self):
        check(self.detector in ("hog", "cnn"), "faces.detector", self.detector, "allowed: hog, cnn")
        check(64 <= self.detect_width <= 4096, "faces.detect_width", self.detect_width, "allowed: 64 to 4096")
        check(0 <= self.upsample <= 3, "faces.upsample", self.upsample, "allowed: 0 to 3")
        check(1 <= self.detect_interval <= 1000, "faces.detect_interval", self.detect_interval, "allowed: 1 to 1000")
        check(0 <= self.smooth_sigma <= 100, "faces.smooth_sigma", self.smooth_sigma, "allowed: 0 to 100")
        check(0 <= self.max_faces <= 64, "faces.max_faces", self.max_faces, "allowed: 0 (no limit) to 64")
        check(0 <= self.min_presence <= 1, "faces.min_presence", self.min_presence, "allowed: 0 to 1 (a share of the searched frames)")


@dataclass(frozen=True)
class CropConfig(StageConfig):
    mode: str = "box"
    size: tuple[int, int] = (256, 256)  # height, width
    margin: float = 1.3

    def __post_init__(self):
        check(self.mode in CROP_MODES, "crop.mode", self.mode, f"allowed: {', '.join(CROP_MODES)}")
        check(len(self.size) == 2 and 8 <= min(self.size) and max(self.size) <= 1024, "crop.size", self.size,
              "must be (height, width), each 8 to 1024")
        check(self.mode == "frame" or self.size[0] == self.size[1], "crop.size", self.size, f"must be square for {self.mode} crops")
        check(1.0 <= self.margin <= 4.0, "crop.margin", self.margin, "allowed: 1.0 to 4.0")

    @property
    def needs_face(self) -> bool:
        return self.mode != "frame"


@dataclass(frozen=True)
class FaceTrack:
    """One face through the sampled frames, in decoded-frame pixels: `boxes_xyxy` float32
    (T, 4) smoothed; `face_found` bool (T,); `landmarks_xy` float32 (T, 68, 2), NaN when off."""

    boxes_xyxy: np.ndarray
    face_found: np.ndarray
    landmarks_xy: np.ndarray


@dataclass(frozen=True)
class Crops:
    """`frames` uint8 (T, h, w, 3) and `affine_t23` float32 (T, 2, 3) mapping frame to crop pixels."""

    frames: np.ndarray
    affine_t23: np.ndarray


def model_path(name: str) -> Path:
    # Found by path: the package's __init__ imports pkg_resources, gone from new setuptools.
    spec = importlib.util.find_spec("face_recognition_models")
    return Path(spec.submodule_search_locations[0]) / "models" / name


@functools.cache
def _hog_detector():
    """dlib's frontal face detector. Building it from the copy inside dlib takes 0.2 s a
    process, loading dlib's own file of it 1 ms: the file is kept in the user's cache, one per
    dlib version, where that is writable."""
    cached = model_cache_dir() / f"frontal_face_detector-dlib-{dlib.__version__}.svm"
    try:
        return dlib.fhog_object_detector(str(cached))
    except RuntimeError:  # not written yet, or cut short
        pass
    detector = dlib.get_frontal_face_detector()
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        detector.save(str(partial))
        os.replace(partial, cached)
    except (OSError, RuntimeError):  # a read-only home: build it again next time
        partial.unlink(missing_ok=True)
    return detector


def model_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dfprep"


@functools.cache
def _cnn_detector():
    return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))


@functools.cache
def _landmark_predictor():
    return dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


def load_models(config: FacesConfig) -> None:
    """Load the models `config` uses now (once per process) rather than at the first face."""
    if config.detector == "hog":
        _hog_detector()
    else:
        _cnn_detector()
    if config.landmarks:
        _landmark_predictor()


def detect(frame_hw3: np.ndarray, config: FacesConfig, region_xyxy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Faces in one RGB frame, or in a region of it: boxes float32 (N, 4) xyxy in frame pixels,
    scores float32 (N,). The whole frame is searched `detect_width` wide; a region is searched
    at the scale that makes a face of its expected size (a 2.5th of the region) 100 px wide."""
    x0, y0 = 0, 0
    image = frame_hw3
    if region_xyxy is None:
        scale = min(1.0, config.detect_width / frame_hw3.shape[1])
    else:
        height, width = frame_hw3.shape[:2]
        x0, y0 = (max(0, int(v)) for v in region_xyxy[:2])
        x1, y1 = min(width, int(np.ceil(region_xyxy[2]))), min(height, int(np.ceil(region_xyxy[3])))
        image = frame_hw3[y0:y1, x0:x1]
        scale = min(1.0, _REGION_FACE_PX * _REGION_SPAN / max(region_xyxy[2] - region_xyxy[0], 1.0))
        if min(image.shape[:2]) * scale < _REGION_FACE_PX:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if config.detector == "hog":
        rects, scores, _ = _hog_detector().run(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), config.upsample)
    else:
        found = _cnn_detector()(small, config.upsample)
        rects, scores = [d.rect for d in found], [d.confidence for d in found]
    boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32).reshape(-1, 4)
    return boxes / scale + np.array([x0, y0, x0, y0], np.float32), np.asarray(scores, np.float32)


def track(frames_thw3: np.ndarray, frame_index: np.ndarray, clip_index: np.ndarray, config: FacesConfig) -> FaceTrack:
    """The main face only: `tracks(...)[0]`, without the work for the others."""
    return tracks(frames_thw3, frame_index, clip_index, dataclasses.replace(config, max_faces=1))[0]


def tracks(frames_thw3: np.ndarray, frame_index: np.ndarray, clip_index: np.ndarray, config: FacesConfig) -> tuple[FaceTrack, ...]:
    """Detect every `detect_interval` frames, link detections into tracks, keep the main one
    (largest and most persistent) and every other detected in at least `min_presence` of the
    searched frames, in that order, at most `max_faces`; fill and smooth each over every
    frame. Raises NoFace when no frame has a face."""
    at = detection_positions(frame_index, clip_index, config.detect_interval)
    detections = _detect_along(frames_thw3, at, clip_index, config)
    if not any(len(boxes) for boxes, _ in detections.values()) and config.upsample == 0:
        # Small faces: one more pass at double resolution before calling the video faceless.
        retry = FacesConfig(**{**config.to_dict(), "upsample": 1})
        detections = {t: detect(frames_thw3[t], retry) for t in at}
    ranked = _ranked(_link(detections, clip_index))
    if not ranked:
        raise NoFace(f"no face in {len(at)} frames searched")
    kept = ranked[:1] + [linked for linked in ranked[1:] if len(linked) >= config.min_presence * len(at)]
    return tuple(_face_track(linked, at, frames_thw3, frame_index, clip_index, config) for linked in kept[: config.max_faces or None])


def _face_track(linked: dict[int, np.ndarray], searched: list[int], frames_thw3, frame_index, clip_index, config: FacesConfig) -> FaceTrack:
    """A linked track ({position: box}) over every frame: filled, smoothed, with landmarks."""
    boxes, found = _fill(linked, searched, frame_index, clip_index)
    boxes = _smooth(boxes, frame_index, clip_index, config.smooth_sigma)
    landmarks = np.full((len(boxes), 68, 2), np.nan, np.float32)
    if config.landmarks:
        predictor = _landmark_predictor()
        for t, box in enumerate(boxes):
            rect = dlib.rectangle(*[int(round(v)) for v in box])
            shape = predictor(frames_thw3[t], rect)
            landmarks[t] = [(p.x, p.y) for p in shape.parts()]
    return FaceTrack(boxes.astype(np.float32), found, landmarks)


def crop(frames_thw3: np.ndarray, face: FaceTrack | None, clip_index: np.ndarray, config: CropConfig) -> Crops:
    """Cut every frame to `config.size` by the crop mode's rule; `face` may be None for `frame`."""
    height, width = config.size
    affines = np.empty((len(frames_thw3), 2, 3), np.float64)
    if config.mode == "frame":
        src_h, src_w = frames_thw3.shape[1:3]
        affines[:] = [[width / src_w, 0, 0], [0, height / src_h, 0]]
    elif config.mode == "box":
        # The smoothed track box, squared: stable from frame to frame, so flow measures the
        # face, not the cropper's jitter.
        for t, box in enumerate(face.boxes_xyxy):
            affines[t] = _square_affine(box, np.max(box[2:] - box[:2]) * config.margin, width)
    elif config.mode == "fixed":
        for clip in np.unique(clip_index):
            members = np.flatnonzero(clip_index == clip)
            box = face.boxes_xyxy[members[0]]
            side = 2.0 * np.sqrt(np.prod(box[2:] - box[:2]))
            affines[members] = _square_affine(box, side, width)
    else:
        template = (ALIGN_TEMPLATE_112 / 112.0 - 0.5) / config.margin + 0.5
        for t, points in enumerate(face.landmarks_xy):
            affines[t] = _similarity(_five_points(points), template * width)
    crops = np.stack([_warp(frame, affine, (height, width)) for frame, affine in zip(frames_thw3, affines)])
    return Crops(crops, affines.astype(np.float32))


def landmarks_in_crop(landmarks_xy: np.ndarray, affine_t23: np.ndarray) -> np.ndarray:
    """Map (T, K, 2) frame-pixel points through each frame's crop affine."""
    return np.einsum("tij,tkj->tki", affine_t23[:, :, :2], landmarks_xy) + affine_t23[:, None, :, 2]


def _detect_along(frames_thw3: np.ndarray, positions: list[int], clip_index: np.ndarray, config: FacesConfig) -> dict:
    """Detections at each position. The first frame of a clip is searched whole; later ones
    only around the faces of the previous search, which is a fraction of the pixels, and
    whole again when those regions come up empty."""
    detections: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    previous = None
    for t in positions:
        known = detections[previous][0] if previous is not None and clip_index[previous] == clip_index[t] else ()
        found = [detect(frames_thw3[t], config, _search_region(box)) for box in known]
        boxes = np.concatenate([b for b, _ in found]) if found else np.zeros((0, 4), np.float32)
        scores = np.concatenate([s for _, s in found]) if found else np.zeros(0, np.float32)
        if len(boxes):
            detections[t] = _deduplicate(boxes, scores)
        else:
            detections[t] = detect(frames_thw3[t], config)
        previous = t
    return detections


def _search_region(box: np.ndarray) -> np.ndarray:
    centre, side = (box[:2] + box[2:]) / 2, np.sqrt(np.prod(box[2:] - box[:2])) * _REGION_SPAN
    return np.concatenate([centre - side / 2, centre + side / 2])


def _deduplicate(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping searches can find one face twice; keep the better-scored of each pair."""
    keep: list[int] = []
    for i in np.argsort(-scores):
        if all(_box_distance(boxes[i], boxes[j]) > 0.5 for j in keep):
            keep.append(int(i))
    return boxes[keep], scores[keep]


def detection_positions(frame_index: np.ndarray, clip_index: np.ndarray, interval: int) -> list[int]:
    """Rows searched for faces: each clip's first and last, and one every `interval` source frames."""
    positions = []
    for clip in np.unique(clip_index):
        members = np.flatnonzero(clip_index == clip)
        last = None
        for t in members:
            if last is None or frame_index[t] - frame_index[last] >= interval:
                positions.append(int(t))
                last = t
        if last != members[-1]:
            positions.append(int(members[-1]))
    return positions


def _link(detections: dict[int, tuple[np.ndarray, np.ndarray]], clip_index: np.ndarray) -> list[dict[int, np.ndarray]]:
    """Link per-frame detections ({position: boxes}) into tracks ({position: box}).

    First segments: a detection continues a segment seen at the previous searched frame of the
    same clip when it is within 0.5 of the segment's last box (see `_box_distance`). Then
    segments chain into tracks across misses, cuts and clip boundaries, where more time has
    passed, when the next one starts within 2.5 of where the last one ended (a cut to a
    new framing of the same subject moves the face about one to two faces)."""
    segments: list[dict[int, np.ndarray]] = []
    previous: int | None = None
    for t in sorted(detections):
        open_segments = [s for s in segments if previous is not None and max(s) == previous and clip_index[previous] == clip_index[t]]
        for box in detections[t][0]:
            best = _nearest(open_segments, box, reach=0.5)
            if best is None:
                segments.append({t: box})
            else:
                best[t] = box
                open_segments.remove(best)
        previous = t
    tracks: list[dict[int, np.ndarray]] = []
    for segment in sorted(segments, key=min):
        earlier = [track for track in tracks if max(track) < min(segment)]
        best = _nearest(earlier, segment[min(segment)], reach=2.5)
        if best is None:
            tracks.append(dict(segment))
        else:
            best.update(segment)
    return tracks


def _nearest(tracks: list[dict[int, np.ndarray]], box: np.ndarray, reach: float):
    """The track whose last box is closest to `box`, within `reach`; None if none is."""
    best, best_cost = None, reach
    for track in tracks:
        cost = _box_distance(track[max(track)], box)
        if cost < best_cost:
            best, best_cost = track, cost
    return best


def _box_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Centre distance in units of the mean side, plus twice the log ratio of the sides: a
    face that moved one side away costs 1, one that doubled in size costs 1.4."""
    side_a, side_b = np.sqrt(np.prod(a[2:] - a[:2])), np.sqrt(np.prod(b[2:] - b[:2]))
    shift = np.linalg.norm((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2) / ((side_a + side_b) / 2)
    return float(shift + 2 * abs(np.log(side_b / side_a)))


def _ranked(tracks: list[dict[int, np.ndarray]]) -> list[dict[int, np.ndarray]]:
    """Largest and most persistent first, in one number: the sum of box sides over its
    detections. Ties keep the linking order (a stable sort)."""

    def weight(track):
        return sum(np.sqrt(np.prod(box[2:] - box[:2])) for box in track.values())

    return sorted(tracks, key=weight, reverse=True)


def _fill(linked: dict[int, np.ndarray], searched: list[int], frame_index, clip_index) -> tuple[np.ndarray, np.ndarray]:
    """A box for every frame: detected, interpolated inside a clip, or the nearest detection.
    A frame counts as found only when detected or between two searched frames that both had
    the face."""
    n = len(frame_index)
    boxes = np.empty((n, 4), np.float64)
    found = np.zeros(n, bool)
    hits = np.array(sorted(linked))
    for clip in np.unique(clip_index):
        members = np.flatnonzero(clip_index == clip)
        clip_hits = hits[np.isin(hits, members)]
        clip_searched = [t for t in searched if clip_index[t] == clip]
        for t in members:
            if t in linked:
                boxes[t], found[t] = linked[t], True
                continue
            before, after = clip_hits[clip_hits < t], clip_hits[clip_hits > t]
            if len(before) and len(after):
                a, b = before[-1], after[0]
                w = (frame_index[t] - frame_index[a]) / (frame_index[b] - frame_index[a])
                boxes[t] = (1 - w) * linked[a] + w * linked[b]
                found[t] = not any(a < s < b for s in clip_searched)
            else:
                nearest = hits[np.argmin(np.abs(frame_index[hits] - frame_index[t]))]
                boxes[t] = linked[nearest]
    return boxes, found


def _smooth(boxes: np.ndarray, frame_index: np.ndarray, clip_index: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return boxes
    centre_size = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)
    out = np.empty_like(centre_size)
    for clip in np.unique(clip_index):
        members = np.flatnonzero(clip_index == clip)
        # Weights by distance in source frames, so frames far apart are not mixed.
        distance = frame_index[members][:, None] - frame_index[members][None, :]
        weights = np.exp(-0.5 * (distance / sigma) ** 2)
        out[members] = (weights / weights.sum(axis=1, keepdims=True)) @ centre_size[members]
    return np.concatenate([out[:, :2] - out[:, 2:] / 2, out[:, :2] + out[:, 2:] / 2], axis=1)


def _square_affine(box: np.ndarray, side: float, out_side: int) -> np.ndarray:
    centre = (box[:2] + box[2:]) / 2
    scale = out_side / side
    return np.array([[scale, 0, out_side / 2 - scale * centre[0]], [0, scale, out_side / 2 - scale * centre[1]]])


def _five_points(landmarks_68: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            landmarks_68[36:42].mean(axis=0),
            landmarks_68[42:48].mean(axis=0),
            landmarks_68[30],
            landmarks_68[48],
            landmarks_68[54],
        ]
    )


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift) taking source points to
    target points (Umeyama, 1991), as a 2x3 matrix. Written out rather than taken from
    scikit-image, whose import costs each worker half a second for these ten lines."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / source_centred.var(axis=0).sum()
    shift = target_mean - scale * rotation @ source_mean
    return np.concatenate([scale * rotation, shift[:, None]], axis=1)


def _warp(frame: np.ndarray, affine: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Sub-pixel warp of the crop region; strong shrinking goes through a Gaussian pyramid
    first so that the crop is not aliased."""
    height, width = size_hw
    scale = np.sqrt(abs(np.linalg.det(affine[:, :2])))
    source = frame
    matrix = affine.copy()
    if scale < 0.5:
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], np.float64) @ inverse.T
        x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 2, 0, None)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
        source = frame[y0:y1, x0:x1]
        matrix[:, 2] += matrix[:, :2] @ [x0, y0]
        while scale < 0.5 and min(source.shape[:2]) >= 4:
            source = cv2.pyrDown(source)
            matrix[:, :2] *= 2
            scale *= 2
    if source.size == 0:
        return np.zeros((height, width, 3), np.uint8)
    return cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
