"""The store's schema, format 2: every array, attribute, status and index column, and the
typed video entry that a video group's attributes and the index hold. Nothing outside this
module spells an array name, an attribute name or a status; docs/STORE.md describes it."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field

import numpy as np

FORMAT = 2
FORMAT_ATTR = "dfprep_format"  # on the root group
VIDEOS = "videos"  # the group holding one group a video
COMPLETE = "dfprep_complete"  # a video group's completion record, written last
GENERATION = "dfprep_generation"  # on each array: the write that made it
INDEX = "manifest.csv"
INDEX_STATE = "dfprep_index"  # on the root group: {"state": clean|writing, "run_id": ...}


class Status(str, enum.Enum):
    """Every stored video ends in exactly one of these."""

    DONE = "done"
    NO_FACE = "no_face"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


REAL, FAKE, UNLABELED = 0, 1, -1
LABEL_NAMES = {REAL: "real", FAKE: "fake", UNLABELED: "unlabeled"}

# -- arrays ------------------------------------------------------------------------------

FRAMES = "frames"  # the first crop of the profile; further crops are frames_<mode>
FLOW = "flow"
TRACK = "track"

FACE, FRAME, CHANNEL, COMPONENT, FIELD = "face", "frame", "channel", "component", "field"

# One row of `track` a frame and face: where the face is, and what the frame is.
_BASE_FIELDS = ("frame_index", "clip_index", "timestamp_s", "face_found", "flow_valid",
                "box_x1", "box_y1", "box_x2", "box_y2")
LANDMARKS = 68
_LANDMARK_FIELDS = tuple(f"landmark_{k}_{axis}" for k in range(LANDMARKS) for axis in "xy")


def frames_name(crop_position: int, mode: str) -> str:
    """`frames` for the profile's first crop, `frames_<mode>` for the others."""
    return FRAMES if crop_position == 0 else f"{FRAMES}_{mode}"


def affine_fields(frames_array: str) -> tuple[str, ...]:
    """The 2x3 affine from decoded-frame to crop pixels of a frames array, row by row."""
    return tuple(f"{frames_array}_affine_{row}{col}" for row in range(2) for col in range(3))


def track_fields(frames_arrays: tuple[str, ...]) -> tuple[str, ...]:
    return _BASE_FIELDS + _LANDMARK_FIELDS + tuple(name for array in frames_arrays for name in affine_fields(array))


def frames_dims(name: str, per_face: bool) -> tuple[str, ...]:
    """Named axes of a frames array: crops of another size than the first get their own y/x."""
    y, x = ("y", "x") if name == FRAMES else (f"{name}_y", f"{name}_x")
    return ((FACE,) if per_face else ()) + (FRAME, y, x, CHANNEL)


def flow_dims(per_face: bool) -> tuple[str, ...]:
    return ((FACE,) if per_face else ()) + (FRAME, "y", "x", COMPONENT)


TRACK_DIMS = (FACE, FRAME, FIELD)


class ArrayKind(enum.Enum):
    """How an array is laid out on disk (feature_store/store.py): images and flow in one
    shard of clip-sized chunks, the track table in one chunk."""

    IMAGES = "images"
    FLOW = "flow"
    TABLE = "table"


@dataclass(frozen=True)
class ArrayData:
    data: np.ndarray
    dims: tuple[str, ...]
    kind: ArrayKind
    attributes: dict = field(default_factory=dict)


def images_array(name: str, data: np.ndarray, per_face: bool) -> ArrayData:
    """uint8 ([face,] T, H, W, 3): a face axis unless the crop ignores faces (`frame` mode)."""
    return ArrayData(data, frames_dims(name, per_face), ArrayKind.IMAGES)


def flow_array(data: np.ndarray, per_face: bool) -> ArrayData:
    """float ([face,] T, H, W, 2), frame-aligned: flow[t] moves frame t to frame t+1 of the
    same clip, in crop pixels (x, y); zeros where `flow_valid` is 0 (a clip's last frame)."""
    return ArrayData(data, flow_dims(per_face), ArrayKind.FLOW)


def track_array(table: np.ndarray, fields: tuple[str, ...]) -> ArrayData:
    """float64 (faces, T, len(fields)), the columns named by `fields`."""
    return ArrayData(table, TRACK_DIMS, ArrayKind.TABLE, {"fields": list(fields)})


def track_table(frame_index: np.ndarray, clip_index: np.ndarray, timestamps_s: np.ndarray, face_found_ft: np.ndarray,
                boxes_ft4: np.ndarray, landmarks_ftk2: np.ndarray, affines: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    """The track table and its fields from per-frame values; `affines` maps each frames
    array to its (F or 1, T, 2, 3) frame-to-crop affines."""
    faces, n = face_found_ft.shape
    fields = track_fields(tuple(affines))
    flow_valid = np.append(clip_index[1:] == clip_index[:-1], False) if n else np.zeros(0, bool)
    shared = np.stack([frame_index, clip_index, timestamps_s], axis=-1).astype(np.float64)
    columns = [
        np.broadcast_to(shared, (faces, n, 3)),
        face_found_ft[..., None],
        np.broadcast_to(flow_valid[:, None], (faces, n, 1)),
        boxes_ft4,
        landmarks_ftk2.reshape(faces, n, 2 * LANDMARKS),
        *(np.broadcast_to(affine.reshape(-1, n, 6), (faces, n, 6)) for affine in affines.values()),
    ]
    table = np.concatenate([np.asarray(column, np.float64) for column in columns], axis=-1)
    return np.ascontiguousarray(table), fields


def boxes_of(columns: dict[str, np.ndarray]) -> np.ndarray:
    """(faces, T, 4) boxes x1 y1 x2 y2 from the track's columns."""
    return np.stack([columns[name] for name in _BASE_FIELDS[5:9]], axis=-1)


def landmarks_of(columns: dict[str, np.ndarray]) -> np.ndarray:
    """(faces, T, 68, 2) landmarks in the first crop's pixels from the track's columns."""
    points = np.stack([columns[name] for name in _LANDMARK_FIELDS], axis=-1)
    return points.reshape(*points.shape[:-1], LANDMARKS, 2)


def affines_of(columns: dict[str, np.ndarray], frames_array: str) -> np.ndarray:
    """(faces, T, 2, 3) frame-to-crop affines of a frames array from the track's columns."""
    values = np.stack([columns[name] for name in affine_fields(frames_array)], axis=-1)
    return values.reshape(*values.shape[:-1], 2, 3)


def frame_aligned_flow(flow_fhw2: np.ndarray, pairs_f2: np.ndarray, n_frames: int) -> np.ndarray:
    """(T, H, W, 2): each flow at its pair's first frame, zeros elsewhere."""
    aligned = np.zeros((n_frames, *flow_fhw2.shape[1:]), flow_fhw2.dtype)
    aligned[pairs_f2[:, 0]] = flow_fhw2
    return aligned


# -- the video entry ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """The source file as processed: size, mtime and, once it decoded, its content hash."""

    size: int
    mtime_ns: int
    sha256: str | None = None


@dataclass(frozen=True)
class StageKeys:
    """Chained cache keys (pipeline/profiles.py): a stage reruns when its key changes."""

    decode: str
    faces: str
    flow: str


@dataclass(frozen=True)
class Counts:
    frames: int = 0
    flows: int = 0
    face_found: int = 0  # frames where the main face was found
    faces: int = 0  # face tracks stored


@dataclass(frozen=True)
class VideoEntry:
    """Everything a video group's attributes hold besides the completion record."""

    video_id: str
    label: int
    split: str
    dataset: str
    source_path: str
    status: Status
    error: str = ""
    extra: dict = field(default_factory=dict)
    profile: str = ""
    config: dict = field(default_factory=dict)  # the Profile, as Profile.to_dict()
    fingerprint: Fingerprint | None = None
    stage_keys: StageKeys | None = None
    updated_at: str = ""
    run_id: str = ""
    clip_lengths: tuple[int, ...] = ()
    counts: Counts = Counts()
    arrays: tuple[str, ...] = ()
    video: dict = field(default_factory=dict)  # source size, fps, rotation, codec, scales
    backends: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    thumbnail: dict | None = None  # {"jpeg_base64": ..., "scale": frame pixels -> thumbnail}
    bytes_stored: int = 0
    worker_peak_rss_mb: float = 0.0

    def to_attrs(self) -> dict:
        attrs = dataclasses.asdict(self)
        attrs["status"] = self.status.value
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict) -> VideoEntry:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in attrs.items() if name in names}
        values["status"] = Status(values["status"])
        values["fingerprint"] = Fingerprint(**values["fingerprint"]) if values.get("fingerprint") else None
        values["stage_keys"] = StageKeys(**values["stage_keys"]) if values.get("stage_keys") else None
        values["counts"] = Counts(**values.get("counts", {}))
        for name in ("clip_lengths", "arrays", "warnings"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)

    def replace(self, **changes) -> VideoEntry:
        return dataclasses.replace(self, **changes)


# -- the index ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexRow:
    """One video in the index (`manifest.csv`): what planning, `status`, `export` and the
    Dataset need, so that none of them opens a group to decide what to do."""

    key: str
    entry: VideoEntry
    generation: str  # the group's completion record's; a reader opening the group checks it

    COLUMNS = (
        "video_id", "key", "label", "split", "dataset", "status", "error", "n_frames", "n_flows", "face_found",
        "n_faces", "clip_lengths", "arrays", "profile", "source_path", "size", "mtime_ns", "sha256",
        "decode_key", "faces_key", "flow_key", "generation", "updated_at", "warnings", "extra",
    )

    @property
    def video_id(self) -> str:
        return self.entry.video_id

    @property
    def status(self) -> Status:
        return self.entry.status

    def to_csv(self) -> dict[str, str | int]:
        entry, fp, keys = self.entry, self.entry.fingerprint, self.entry.stage_keys
        return {
            "video_id": entry.video_id, "key": self.key, "label": entry.label, "split": entry.split,
            "dataset": entry.dataset, "status": entry.status.value, "error": entry.error,
            "n_frames": entry.counts.frames, "n_flows": entry.counts.flows, "face_found": entry.counts.face_found,
            "n_faces": entry.counts.faces, "clip_lengths": " ".join(map(str, entry.clip_lengths)),
            "arrays": " ".join(entry.arrays), "profile": entry.profile, "source_path": entry.source_path,
            "size": fp.size if fp else "", "mtime_ns": fp.mtime_ns if fp else "", "sha256": (fp.sha256 or "") if fp else "",
            "decode_key": keys.decode if keys else "", "faces_key": keys.faces if keys else "",
            "flow_key": keys.flow if keys else "", "generation": self.generation, "updated_at": entry.updated_at,
            "warnings": json.dumps(list(entry.warnings)), "extra": json.dumps(entry.extra, sort_keys=True),
        }

    @classmethod
    def from_csv(cls, row: dict[str, str]) -> IndexRow:
        fingerprint = Fingerprint(int(row["size"]), int(row["mtime_ns"]), row["sha256"] or None) if row["size"] else None
        keys = StageKeys(row["decode_key"], row["faces_key"], row["flow_key"]) if row["decode_key"] else None
        entry = VideoEntry(
            video_id=row["video_id"], label=int(row["label"]), split=row["split"], dataset=row["dataset"],
            source_path=row["source_path"], status=Status(row["status"]), error=row["error"],
            extra=json.loads(row["extra"]), profile=row["profile"], fingerprint=fingerprint, stage_keys=keys,
            updated_at=row["updated_at"], clip_lengths=tuple(int(n) for n in row["clip_lengths"].split()),
            counts=Counts(int(row["n_frames"]), int(row["n_flows"]), int(row["face_found"]), int(row["n_faces"])),
            arrays=tuple(row["arrays"].split()), warnings=tuple(json.loads(row["warnings"])),
        )
        return cls(row["key"], entry, row["generation"])

    def to_json(self) -> dict:
        """`status --json`: the index row with typed values."""
        row = self.to_csv()
        row.update(extra=self.entry.extra, warnings=list(self.entry.warnings), clip_lengths=list(self.entry.clip_lengths),
                   arrays=list(self.entry.arrays), label_name=LABEL_NAMES.get(self.entry.label, str(self.entry.label)))
        return row
