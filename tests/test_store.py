import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from feature_store import COMPLETE, FeatureStore, manifest, video_key
from stages.errors import StoreLocked

AWKWARD_IDS = ["a/../../etc/passwd", "..", "/abs/path", "with space", "été/vidéo", "$(rm -rf ~); `x` | y", "a" * 300, "日本語"]


@pytest.mark.parametrize("video_id", AWKWARD_IDS)
def test_keys_are_single_safe_path_components(video_id, tmp_path):
    key = video_key(video_id)
    assert "/" not in key and "\\" not in key and key not in (".", "..") and len(key) <= 93
    assert key.isascii() and key == video_key(video_id)
    store = FeatureStore(tmp_path / "s.zarr")
    store.write_video(key, {"frames": np.zeros((1, 2, 2, 3), np.uint8)}, {"video_id": video_id})
    written = {p.resolve() for p in tmp_path.rglob("*")}
    assert all(str(p).startswith(str((tmp_path / "s.zarr").resolve())) for p in written)


def test_keys_of_different_ids_differ():
    keys = {video_key(v) for v in AWKWARD_IDS + ["a b", "a_b", "a/b", "a__b"]}
    assert len(keys) == len(AWKWARD_IDS) + 4


def test_write_then_read_round_trip(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    frames = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 3), dtype=np.uint8)
    flow = np.random.default_rng(1).normal(size=(39, 8, 8, 2)).astype(np.float16)
    store.write_video("k", {"frames": frames, "flow": flow}, {"video_id": "v", "status": "done"}, chunk_frames=16)
    assert np.array_equal(store.read("k", "frames"), frames)
    assert np.array_equal(store.read("k", "flow"), flow)
    assert store.video("k")["frames"].chunks == (16, 8, 8, 3)
    # Plain zarr reads it too, once dfprep's row-delta filter is registered (importing
    # feature_store does that).
    plain = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert np.array_equal(plain["videos/k/frames"][...], frames)
    assert store.attrs("k")["video_id"] == "v"


def test_a_group_without_the_completion_flag_is_invisible(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    store.write_video("done", {"frames": np.zeros((2, 2, 2, 3), np.uint8)}, {"video_id": "a"})
    # What a writer killed half-way leaves: arrays, attributes, no flag.
    half = store.root.create_group("videos/half")
    half.create_array("frames", shape=(2, 2, 2, 3), dtype="uint8")
    half.attrs.update({"video_id": "b", "status": "done"})
    assert store.keys() == ["done", "half"]
    assert store.attrs("half") is None
    assert list(store.complete_attrs()) == ["done"]
    zarr_json = json.loads((tmp_path / "s.zarr/videos/done/zarr.json").read_text())
    assert zarr_json["attributes"][COMPLETE] is True


def test_update_replaces_arrays_and_keeps_the_rest(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    store.write_video("k", {"frames": np.ones((4, 2, 2, 3), np.uint8), "flow": np.zeros((3, 2, 2, 2), np.float16)}, {"a": 1})
    store.update_video("k", {"flow": np.ones((3, 2, 2, 2), np.float16)}, {"b": 2})
    assert store.read("k", "flow").min() == 1 and store.read("k", "frames").min() == 1
    assert store.attrs("k")["a"] == 1 and store.attrs("k")["b"] == 2


def test_manifest_is_a_pandas_table_and_rebuilds_from_groups(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    for i, status in enumerate(["done", "failed", "no_face"]):
        attrs = {"video_id": f"v{i}", "label": i % 2, "split": "train", "dataset": "t", "status": status,
                 "error": "" if status == "done" else f"{status} reason", "extra": {"method": "x"},
                 "counts": {"frames": 3, "flows": 2, "face_found": 3}}
        store.write_video(video_key(f"v{i}"), {}, attrs)
    rows = manifest.rebuild(store)
    table = pd.read_csv(tmp_path / "s.zarr" / "manifest.csv")
    assert list(table["video_id"]) == ["v0", "v1", "v2"]
    assert list(table["status"]) == ["done", "failed", "no_face"]
    assert table.loc[1, "error"] == "failed reason"
    assert rows == manifest.read(store)
    assert rows[0]["extra"] == {"method": "x"}


def test_a_second_lock_on_a_store_is_refused(tmp_path):
    first, second = FeatureStore(tmp_path / "s.zarr"), FeatureStore(tmp_path / "s.zarr")
    with first.lock():
        with pytest.raises(StoreLocked, match=rf"in use by dfprep run {os.getpid()} on .* since "):
            with second.lock():
                pass
    with second.lock():
        pass


def test_face_crops_are_stored_losslessly_in_fewer_bytes_than_png(tmp_path):
    import cv2

    import videos
    from stages import faces

    frames = videos.moving_face(videos.smooth_path(16))
    track = faces.track(frames, np.arange(16), np.zeros(16, np.int32), faces.FacesConfig())
    crops = faces.crop(frames, track, np.zeros(16, np.int32), faces.CropConfig("box", (256, 256))).frames
    store = FeatureStore(tmp_path / "s.zarr")
    store.write_video("k", {"frames": crops}, {})
    assert np.array_equal(store.read("k", "frames"), crops)
    png_bytes = sum(len(cv2.imencode(".png", crop)[1]) for crop in crops)
    assert store.video("k")["frames"].nbytes_stored() <= png_bytes
