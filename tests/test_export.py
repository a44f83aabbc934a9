"""`export --format deepfakebench`, read back the way DeepfakeBench's training loader
(`training/dataset/abstract_dataset.py`) reads a dataset, as its code and configuration
document it: frame-level and video-level (`video_mode`, `clip_size`), train and test, from
PNG files (`lmdb: false`) and from its LMDB (`lmdb: true`)."""

from __future__ import annotations

import json
import os
import random

import cv2
import lmdb
import numpy as np
import pytest

from cli import main
from feature_store import FeatureStore, manifest, schema
from pipeline.profiles import get_profile
from stages.errors import ConfigError

FRAMES = 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from stores import write_tiny_store

    path = tmp_path_factory.mktemp("export") / "tiny.zarr"
    return write_tiny_store(path, get_profile("ofcnn", ["crop.size=32x32"]), frames=FRAMES, size=(32, 32),
                            splits={"train": 2, "val": 1, "test": 2})


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("deepfakebench")
    main(["export", "--store", str(store), "--format", "deepfakebench", "--out", str(out)])
    return out


def loader_items(config: dict, mode: str, rng: random.Random) -> list[tuple[list[str] | str, int, str]]:
    """(frame path or clip of paths, label, video) of every item the loader builds for a mode:
    every label's videos of that split; `frame_num` frames a video, evenly spaced, or its
    first `frame_num` in video mode, cut into `total // clip_size` clips of `clip_size`
    successive frames, each starting at random within its part of the video."""
    name = config["train_dataset"][0] if mode == "train" else config["test_dataset"]
    with open(os.path.join(config["dataset_json_folder"], name + ".json")) as file:
        info = json.load(file)[name]
    frame_num, clip_size = config["frame_num"][mode], config.get("clip_size")
    items = []
    for splits in info.values():
        for video, entry in splits[mode].items():
            label = config["label_dict"][entry["label"]]
            paths = entry["frames"]
            total = len(paths)
            if frame_num < total:
                total = frame_num
                paths = paths[:frame_num] if config["video_mode"] else paths[:: len(paths) // frame_num][:frame_num]
            if not config["video_mode"]:
                items += [(path, label, video) for path in paths]
            elif total >= clip_size:
                clips = total // clip_size
                step = (total - clip_size) // (clips - 1) if clips > 1 else 0
                for i in range(clips):
                    start = rng.randrange(i * step, min((i + 1) * step, total - clip_size + 1)) if clips > 1 else rng.randrange(0, total - clip_size + 1)
                    items.append((paths[start : start + clip_size], label, video))
    return items


def load_frame(config: dict, env, path: str) -> tuple[np.ndarray, np.ndarray]:
    """RGB image and landmarks of one frame path, as the loader resolves and decodes them:
    files from its working folder, a path not starting with `.` under `./<rgb_dir>\\`; LMDB
    keys the path without a leading `./datasets\\`; landmarks at the path with `frames` made
    `landmarks` and `.png` `.npy`, from LMDB as uint32 pairs."""
    landmark_path = path.replace("frames", "landmarks").replace(".png", ".npy")
    if not config["lmdb"]:
        resolve = (lambda p: p) if path[0] == "." else (lambda p: f"./{config['rgb_dir']}\\" + p)
        image = cv2.imread(resolve(path))
        assert image is not None, f"{resolve(path)} does not exist"
        landmarks = np.load(resolve(landmark_path))
    else:
        with env.begin() as txn:
            key = (lambda p: p.replace("./datasets\\", "")) if path[0] == "." else (lambda p: p)
            image = cv2.imdecode(np.frombuffer(txn.get(key(path).encode()), np.uint8), cv2.IMREAD_COLOR)
            landmarks = np.frombuffer(txn.get(key(landmark_path).encode()), np.uint32).reshape(-1, 2)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), np.float32(landmarks)


def config_for(exported, lmdb_mode: bool, video_mode: bool, clip_size: int | None = None, frame_num: int = 32) -> dict:
    """DeepfakeBench's shipped configuration with the lines the README gives."""
    return {
        "lmdb": lmdb_mode, "rgb_dir": "./datasets/rgb", "lmdb_dir": str(exported / "datasets/lmdb"),
        "dataset_json_folder": str(exported / "preprocessing/dataset_json"),
        "label_dict": {"FF-real": 0, "FF-DF": 1, "tiny_real": 0, "tiny_fake": 1},
        "train_dataset": ["tiny"], "test_dataset": "tiny", "frame_num": {"train": frame_num, "test": frame_num},
        "video_mode": video_mode, "clip_size": clip_size,
    }


def stored(store) -> dict[str, tuple[dict, np.ndarray, np.ndarray, np.ndarray]]:
    """Each video's index row, and its main face's crops, landmarks and source frame numbers."""
    opened = FeatureStore(str(store), mode="r")
    videos = {}
    for row in manifest.load(opened):
        video = opened.open_video(row.key)
        track = video.track()
        videos[row.video_id] = ({"split": row.entry.split, "label": row.entry.label, "key": row.key}, video["frames"][0],
                                schema.landmarks_of(track)[0], track["frame_index"][0].astype(int))
    return videos


@pytest.mark.parametrize("lmdb_mode", [False, True], ids=["files", "lmdb"])
@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize("clip_size", [None, FRAMES, 3], ids=["frames", "whole-video-clips", "short-clips"])
def test_deepfakebench_loads_every_frame_and_landmark(store, exported, monkeypatch, lmdb_mode, mode, clip_size):
    config = config_for(exported, lmdb_mode, clip_size is not None, clip_size)
    # Its loader opens the LMDB as `{lmdb_dir}/{dataset}_lmdb`, and reads files from its working folder.
    env = lmdb.open(os.path.join(config["lmdb_dir"], "tiny_lmdb"), create=False, subdir=True, readonly=True, lock=False) if lmdb_mode else None
    monkeypatch.chdir(exported)
    videos = stored(store)
    seen = {}
    for paths, label, video in loader_items(config, mode, random.Random(0)):
        row, frames, landmarks, frame_index = videos[video]
        assert row["split"] == mode and row["label"] == label
        clip = [paths] if isinstance(paths, str) else paths
        if clip_size is not None:
            assert len(clip) == clip_size
        numbers = [int(path.rsplit("/", 1)[1].removesuffix(".png")) for path in clip]
        t = int(np.flatnonzero(frame_index == numbers[0])[0])
        assert numbers == frame_index[t : t + len(clip)].tolist(), "a clip is successive stored frames, in order"
        for offset, path in enumerate(clip):
            image, points = load_frame(config, env, path)
            assert np.array_equal(image, frames[t + offset])
            expected = landmarks[t + offset]
            assert np.array_equal(points, expected) if not lmdb_mode else np.array_equal(points, np.float32(expected.round()))
            seen.setdefault(video, set()).add(t + offset)
    in_split = {video for video, (row, *_) in videos.items() if row["split"] == mode}
    assert set(seen) == in_split and len(in_split) == 4
    if clip_size != 3:
        assert all(seen[video] == set(range(FRAMES)) for video in in_split), "every frame of every video"


def test_frame_num_takes_evenly_spaced_frames(store, exported, monkeypatch):
    config = config_for(exported, False, False, frame_num=4)
    monkeypatch.chdir(exported)
    videos = stored(store)
    for path, _, video in loader_items(config, "train", random.Random(0)):
        number = int(path.rsplit("/", 1)[1].removesuffix(".png"))
        assert number in videos[video][3][::2].tolist()
        assert np.array_equal(load_frame(config, None, path)[0], videos[video][1][videos[video][3].tolist().index(number)])


def test_landmarks_are_the_68_dlib_points_which_deepfakebench_s_lmdb_reader_would_take_for_81(exported):
    key = json.loads((exported / "preprocessing/dataset_json/tiny.json").read_text())["tiny"]["tiny_real"]["train"]
    path = next(iter(key.values()))["frames"][0].replace("frames", "landmarks").replace(".png", ".npy")
    assert np.load(exported / path).shape == (68, 2)
    with lmdb.open(str(exported / "datasets/lmdb/tiny_lmdb"), readonly=True, lock=False) as env, env.begin() as txn:
        value = txn.get(path.encode())
    assert len(value) == 68 * 2 * 4
    with pytest.raises(ValueError):
        np.frombuffer(value, np.uint32).reshape((81, 2))


def test_the_command_prints_the_configuration_lines(store, tmp_path, capsys):
    main(["export", "--store", str(store), "--format", "deepfakebench", "--out", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"10 videos, {10 * FRAMES} frames -> {tmp_path / 'preprocessing/dataset_json/tiny.json'}, "
                      f"{tmp_path / 'datasets/lmdb/tiny_lmdb'}")
    assert f"  lmdb_dir: {tmp_path / 'datasets/lmdb'}" in out and "  label_dict: {..., tiny_real: 0, tiny_fake: 1}" in out
    assert "  train_dataset: [tiny]" in out and "  test_dataset: [tiny]" in out


@pytest.mark.parametrize("name", ["FF-DF", "a/b", "my_frames", "celebdf_c40"])
def test_a_name_deepfakebench_cannot_load_is_refused(store, tmp_path, name):
    from pipeline.export import export_deepfakebench

    with pytest.raises(ConfigError, match=f"^--name '{name}': must be"):
        export_deepfakebench(str(store), str(tmp_path), name)
