import json
import os

import numpy as np
import pandas as pd
import pytest
import zarr

from feature_store import FeatureStore, manifest, schema, video_key
from feature_store.frames import FramesReader
from feature_store.schema import INDEX_STATE, Counts, Status, VideoEntry
from stages.errors import StoreError, StoreFormatError, StoreLocked

AWKWARD_IDS = ["a/../../etc/passwd", "..", "/abs/path", "with space", "été/vidéo", "$(rm -rf ~); `x` | y", "a" * 300, "日本語"]


def entry(video_id: str = "v", status: Status = Status.DONE, **changes) -> VideoEntry:
    return VideoEntry(video_id=video_id, label=1, split="train", dataset="t", source_path=f"/x/{video_id}.mp4",
                      status=status, **changes)


def arrays(frames_fthw3: np.ndarray, flow: bool = True) -> dict:
    """A video's arrays in the schema's layout, track table included."""
    faces, n = frames_fthw3.shape[:2]
    named = {schema.FRAMES: schema.images_array(schema.FRAMES, frames_fthw3, per_face=True)}
    if flow:
        values = np.random.default_rng(1).normal(size=(faces, n, *frames_fthw3.shape[2:4], 2)).astype(np.float16)
        named[schema.FLOW] = schema.flow_array(values, per_face=True)
    table, fields = schema.track_table(np.arange(n), np.zeros(n, int), np.arange(n) / 25, np.ones((faces, n), bool),
                                       np.ones((faces, n, 4)), np.ones((faces, n, 68, 2)),
                                       {schema.FRAMES: np.ones((faces, n, 2, 3))})
    named[schema.TRACK] = schema.track_array(table, fields)
    return named


def random_frames(faces: int = 1, n: int = 40, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (faces, n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("video_id", AWKWARD_IDS)
def test_keys_are_single_safe_path_components(video_id, tmp_path):
    key = video_key(video_id)
    assert "/" not in key and "\\" not in key and key not in (".", "..") and len(key) <= 93
    assert key.isascii() and key == video_key(video_id)
    store = FeatureStore(tmp_path / "s.zarr")
    store.write_video(key, entry(video_id), arrays(random_frames(n=2)))
    written = {p.resolve() for p in tmp_path.rglob("*")}
    assert all(str(p).startswith(str((tmp_path / "s.zarr").resolve())) for p in written)


def test_keys_of_different_ids_differ():
    keys = {video_key(v) for v in AWKWARD_IDS + ["a b", "a_b", "a/b", "a__b"]}
    assert len(keys) == len(AWKWARD_IDS) + 4


def test_a_video_is_one_shard_an_array_with_named_axes_and_clip_chunks(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    frames = random_frames(faces=2, n=40)
    named = arrays(frames)
    store.write_video("k", entry(), named, chunk_frames=16)
    video = store.open_video("k")
    assert np.array_equal(video[schema.FRAMES][...], frames)
    assert np.array_equal(video[schema.FLOW][...], named[schema.FLOW].data)
    assert video[schema.FRAMES].metadata.dimension_names == ("face", "frame", "y", "x", "channel")
    assert video[schema.FLOW].metadata.dimension_names == ("face", "frame", "y", "x", "component")
    assert video[schema.TRACK].metadata.dimension_names == ("face", "frame", "field")
    # The shard holds the whole array; its inner chunks are one clip of one face.
    assert video[schema.FRAMES].shards == (2, 48, 8, 8, 3) and video[schema.FRAMES].chunks == (1, 16, 8, 8, 3)
    files = sorted(str(p.relative_to(tmp_path / "s.zarr/videos/k")) for p in (tmp_path / "s.zarr/videos/k").rglob("*") if p.is_file())
    assert len(files) == 7, files  # the group's metadata, and metadata + one data object an array
    track = video.track()
    assert track["frame_index"].shape == (2, 40) and track["face_found"].all()
    assert video.entry.arrays == (schema.FRAMES, schema.FLOW, schema.TRACK) and video.entry.bytes_stored > 0
    # Plain zarr reads it, no dfprep codec needed (tests/test_open_format.py does it without dfprep).
    plain = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert np.array_equal(plain["videos/k/frames"][1, 3], frames[1, 3])


def test_a_video_being_written_or_left_half_written_is_invisible(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    store.write_video("done", entry("a"), arrays(random_frames(n=2)))
    # What a writer killed half-way leaves: a group with arrays and attributes, no record.
    half = store.root.create_group("videos/half")
    half.create_array("frames", shape=(1, 2, 2, 2, 3), dtype="uint8")
    half.attrs.update(entry("b").to_attrs())
    assert store.keys() == ["done", "half"]
    assert list(store.entries(store.keys())) == ["done"] and store.entry("half") is None
    with pytest.raises(StoreError, match=r"video b \(half\) is not complete"):
        store.open_video("half")
    assert [row.video_id for row in manifest.from_groups(store)] == ["a"]


def test_a_reader_opened_before_a_rewrite_gets_a_clear_error(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    store.write_video("k", entry(), arrays(random_frames()), chunk_frames=16)
    [row] = manifest.rebuild(store)
    reader = FramesReader.open(store.open_video("k", row.generation)[schema.FRAMES])
    store.write_video("k", entry(), arrays(random_frames(seed=1)), chunk_frames=16)
    with pytest.raises(StoreError, match="rewritten after the index was read"):
        store.open_video("k", row.generation)
    with pytest.raises(StoreError, match="rewritten after it was opened"):
        reader.check_unchanged()


def test_a_half_write_by_a_second_writer_is_refused_not_read(tmp_path):
    """A writes a video, B starts the same video and dies, A completes: readers refuse it."""
    first, second = FeatureStore(tmp_path / "s.zarr"), FeatureStore(tmp_path / "s.zarr")
    group = first.root.create_group("videos/k", overwrite=True)
    written = first._write_arrays(group, arrays(random_frames()), 16)
    dying = second.root.create_group("videos/k", overwrite=True)
    second._write_arrays(dying, {schema.FRAMES: arrays(random_frames(seed=2))[schema.FRAMES]}, 16)
    first._commit(group, "k", entry(), written)
    assert first.entry("k") is not None  # the record is there...
    with pytest.raises(StoreError, match=r"video v \(k\) is incomplete: array (frames is from another write|flow is missing)"):
        first.open_video("k")  # ...and names arrays that are not what it wrote


def test_update_rewrites_some_arrays_and_keeps_the_rest(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    frames = random_frames()
    store.write_video("k", entry(error="first"), arrays(frames), chunk_frames=16)
    new_flow = schema.flow_array(np.ones((1, 40, 8, 8, 2), np.float16), per_face=True)
    store.update_video("k", entry(error="second"), {schema.FLOW: new_flow}, chunk_frames=16)
    video = store.open_video("k")
    assert video[schema.FLOW][...].min() == 1 and np.array_equal(video[schema.FRAMES][...], frames)
    assert video.entry.error == "second" and video.entry.arrays == (schema.FRAMES, schema.FLOW, schema.TRACK)


def test_the_index_is_a_pandas_table_rebuilt_from_the_groups_when_stale(tmp_path):
    store = FeatureStore(tmp_path / "s.zarr")
    for i, status in enumerate(Status):
        store.write_video(video_key(f"v{i}"), entry(f"v{i}", status, error="" if status is Status.DONE else f"{status} reason",
                                                    extra={"method": "x"}, clip_lengths=(3,), counts=Counts(3, 2, 3, 1)), {})
    rows = manifest.rebuild(store)
    table = pd.read_csv(tmp_path / "s.zarr" / "manifest.csv")
    assert list(table["video_id"]) == ["v0", "v1", "v2"]
    assert list(table["status"]) == [status.value for status in Status]
    assert table.loc[1, "error"] == "no_face reason" and table.loc[0, "n_flows"] == 2
    assert rows == manifest.read(store) == manifest.load(store)
    assert rows[0].entry.extra == {"method": "x"} and rows[0].entry.clip_lengths == (3,)
    # A run that dies leaves the index marked as being written: readers rebuild it from the groups.
    manifest.begin_run(store, "r1")
    store.write_video(video_key("v9"), entry("v9"), {})
    assert not manifest.is_current(store)
    assert [row.video_id for row in manifest.load(FeatureStore(tmp_path / "s.zarr", mode="r"))] == ["v0", "v1", "v2", "v9"]
    manifest.end_run(store, manifest.from_groups(store))
    assert FeatureStore(tmp_path / "s.zarr").root.attrs[INDEX_STATE] == {"state": "clean"}


def test_a_store_of_another_format_is_refused_with_what_to_do(tmp_path):
    old = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    old.create_group("videos")
    with pytest.raises(StoreFormatError, match=r"is in format 1; .* run `dfprep store upgrade --store "):
        FeatureStore(tmp_path / "old.zarr", mode="r")
    newer = zarr.open_group(str(tmp_path / "new.zarr"), mode="w", zarr_format=3)
    newer.attrs[schema.FORMAT_ATTR] = schema.FORMAT + 1
    with pytest.raises(StoreFormatError, match="newer than this dfprep"):
        FeatureStore(tmp_path / "new.zarr")
    assert json.loads((tmp_path / "new.zarr/zarr.json").read_text())["attributes"][schema.FORMAT_ATTR] == schema.FORMAT + 1


def test_a_second_lock_on_a_store_is_refused(tmp_path):
    first, second = FeatureStore(tmp_path / "s.zarr"), FeatureStore(tmp_path / "s.zarr")
    with first.lock():
        with pytest.raises(StoreLocked, match=rf"in use by dfprep run {os.getpid()} on .* since "):
            with second.lock():
                pass
    with second.lock():
        pass


def test_face_crops_are_stored_losslessly_in_about_png_bytes(tmp_path):
    import cv2

    import videos
    from stages import faces

    frames = videos.moving_face(videos.smooth_path(16))
    track = faces.track(frames, np.arange(16), np.zeros(16, np.int32), faces.FacesConfig())
    crops = faces.crop(frames, track, np.zeros(16, np.int32), faces.CropConfig("box", (256, 256))).frames
    store = FeatureStore(tmp_path / "s.zarr")
    store.write_video("k", entry(), {schema.FRAMES: schema.images_array(schema.FRAMES, crops[None], True)}, chunk_frames=16)
    frames_array = store.open_video("k")[schema.FRAMES]
    assert np.array_equal(frames_array[0], crops)
    png_bytes = sum(len(cv2.imencode(".png", crop)[1]) for crop in crops)
    # Standard codecs cost a little against dfprep's own filter of format 1 (BENCHMARKS.md).
    assert frames_array.nbytes_stored() <= 1.05 * png_bytes, (frames_array.nbytes_stored(), png_bytes)
