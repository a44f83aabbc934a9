"""`export --format deepfakebench`: a store's crops and landmarks laid out as DeepfakeBench's
training loader reads them, from files or from its LMDB, so that its detectors train on
dfprep's preprocessing.

What its loader does, and so what is written here (`out` is the folder DeepfakeBench runs
from, its checkout):
- `preprocessing/dataset_json/<name>.json`: `{name: {<label name>: {train|val|test: {<video>:
  {"label": <label name>, "frames": [paths]}}}}}`; every label name has all three splits.
- frame paths start with `./`: its loader opens such a path as it is (from its working
  folder) and prefixes any other with `./<rgb_dir>\\`, which is no folder on Linux. So they
  read `./datasets/rgb/<name>/frames/<video>/<frame>.png`, `<frame>` the source frame number.
- landmarks: at the frame's path with `frames` replaced by `landmarks` and `.png` by `.npy`
  (its loader derives them so), float32 (68, 2) crop pixels, NaN where no face was found.
- `datasets/lmdb/<name>_lmdb`: the LMDB its `lmdb: true` path opens, keyed by those same
  paths (its reader looks a path starting with `.` up as it is, once `./datasets\\` is cut,
  which these do not hold): the PNG bytes of each frame, and each frame's landmarks as the
  raw bytes of uint32 (68, 2), which is how its reader decodes them (rounded, NaN as 0).
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import lmdb
import numpy as np

from feature_store import manifest
from feature_store.schema import FACE, FRAMES, Status, landmarks_of
from pipeline.report import open_existing_store
from pipeline.sources.base import LABEL_NAMES, SPLITS, UNLABELED
from stages.errors import ConfigError

FORMATS = ("deepfakebench",)
# DeepfakeBench's own folders, as its shipped configuration names them.
RGB_DIR = "datasets/rgb"
LMDB_DIR = "datasets/lmdb"
JSON_DIR = "preprocessing/dataset_json"
# Names DeepfakeBench's loader treats as FaceForensics++ (a compression level under each split,
# one shared LMDB): an export under one of them would not load.
RESERVED_NAMES = ("FaceForensics++", "FaceShifter", "DeepFakeDetection", "FF-DF", "FF-F2F", "FF-FS", "FF-NT")


@dataclass(frozen=True)
class ExportSummary:
    videos: int
    frames: int
    index_path: Path
    lmdb_path: Path
    name: str
    unlabeled: int  # videos listed under <name>_unlabeled, which no label_dict entry maps

    def config_lines(self) -> list[str]:
        """The lines to set in DeepfakeBench's train and test configuration."""
        lines = [
            f"dataset_json_folder: {self.index_path.parent}",
            f"lmdb_dir: {self.lmdb_path.parent}",
            f"lmdb: true    # false reads the PNG files: then run DeepfakeBench from {self.index_path.parents[1]}",
            f"label_dict: {{..., {self.name}_real: 0, {self.name}_fake: 1}}",
            f"train_dataset: [{self.name}]",
            f"test_dataset: [{self.name}]",
        ]
        if self.unlabeled:
            lines.append(f"# {self.unlabeled} unlabeled videos are listed as {self.name}_unlabeled: DeepfakeBench loads them only once "
                         "label_dict maps that name (its metrics are then meaningless)")
        return lines


def export_deepfakebench(store_url: str, out: str, name: str | None = None) -> ExportSummary:
    """Write every done video of the store for DeepfakeBench under `out` (see the module's
    docstring for the layout); an earlier export of the same name is replaced."""
    videos = _done_videos(store_url)
    first = next(videos, None)
    if first is None:
        raise ConfigError(f"--store {store_url}: no done video to export")
    root = Path(out).resolve()
    name = name or first[0]["dataset"]
    if not name or any(c in name for c in "/\\") or "frames" in name or name.startswith(".") or name.endswith("_c40") or name in RESERVED_NAMES:
        raise ConfigError(f"--name {name!r}: must be a file name without '/', '\\', 'frames', a leading '.', or a name "
                          f"DeepfakeBench reserves for FaceForensics++ ({', '.join(RESERVED_NAMES)}, *_c40)")
    labels = {label: f"{name}_{suffix}" for label, suffix in LABEL_NAMES.items()}
    index: dict[str, dict] = {}
    lmdb_path = root / LMDB_DIR / f"{name}_lmdb"
    partial = lmdb_path.with_name(lmdb_path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = lmdb.open(str(partial), map_size=1 << 30)
    frames_written, count = 0, 0
    try:
        for row, arrays in itertools.chain([first], videos):
            label = labels[int(row["label"])]
            # Only the one `frames` folder may hold the word: the landmark path replaces it everywhere.
            video = row["video_id"].replace("frames", "frms")
            paths = _write_video(root, env, f"./{RGB_DIR}/{name}/frames/{video}", arrays)
            entries = index.setdefault(label, {split: {} for split in SPLITS})
            entries.setdefault(row["split"], {})[video] = {"label": label, "frames": paths}
            frames_written += len(paths)
            count += 1
    finally:
        env.close()
    shutil.rmtree(lmdb_path, ignore_errors=True)
    partial.rename(lmdb_path)
    index_path = root / JSON_DIR / f"{name}.json"
    index_path.parent.mkdir(parents=True, exist_ok=True)
    index_path.write_text(json.dumps({name: index}, indent=1))
    unlabeled = sum(len(entries) for entries in index.get(labels[UNLABELED], {}).values())
    return ExportSummary(count, frames_written, index_path, lmdb_path, name, unlabeled)


def _done_videos(store_url: str) -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
    """({"video_id", "label", "split", "dataset"}, {"frames", "landmarks", "frame_index"}) of
    each done video's main face, by video id: everything export reads from the store.
    DeepfakeBench's own preprocessing keeps one face a video, the largest: so does this."""
    store = open_existing_store(store_url)
    rows = [row for row in manifest.load(store) if row.status is Status.DONE]
    for row in sorted(rows, key=lambda r: r.video_id):
        video = store.open_video(row.key, row.generation)
        frames, track = video[FRAMES], video.track()
        entry = row.entry
        yield ({"video_id": entry.video_id, "label": entry.label, "split": entry.split, "dataset": entry.dataset},
               {"frames": frames[0] if frames.metadata.dimension_names[0] == FACE else frames[...],
                "landmarks": landmarks_of(track)[0].astype(np.float32),
                "frame_index": track["frame_index"][0].astype(np.int64)})


def _write_video(root: Path, env: lmdb.Environment, folder: str, arrays: dict[str, np.ndarray]) -> list[str]:
    """Each frame as a PNG file and LMDB value, its landmarks as an .npy file and LMDB value;
    the frames' paths as the JSON lists them."""
    records = []
    for frame, points, number in zip(arrays["frames"], arrays["landmarks"], arrays["frame_index"]):
        path = f"{folder}/{int(number):03d}.png"
        ok, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ConfigError(f"--out {root}: cannot encode {path} as PNG")
        landmarks = points.astype(np.float32)
        records.append((path, png.tobytes(), path.replace("frames", "landmarks").replace(".png", ".npy"), landmarks))
    for path, png, landmark_path, landmarks in records:
        file = root / path
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(png)
            (root / landmark_path).parent.mkdir(parents=True, exist_ok=True)
            np.save(root / landmark_path, landmarks)
        except OSError as exc:
            raise ConfigError(f"--out {root}: cannot write {file} ({exc.strerror or exc})") from exc
    as_read = [(path, png, landmark_path, np.nan_to_num(landmarks.round(), nan=0).clip(0, 2**32 - 1).astype(np.uint32).tobytes())
               for path, png, landmark_path, landmarks in records]
    _put(env, [(key, value) for path, png, landmark_path, points in as_read for key, value in ((path, png), (landmark_path, points))])
    return [path for path, *_ in records]


def _put(env: lmdb.Environment, items: list[tuple[str, bytes]]) -> None:
    """One video's values in one transaction, growing the map when it is full."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key.encode(), value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)
