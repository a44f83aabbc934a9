import json
import re
import os

import numpy as np
import pandas as pd
import pytest

import videos
from conftest import FIXTURES, needs_fixtures, run_cli
from feature_store import FeatureStore, schema, video_key
from feature_store.schema import Status
from pipeline.profiles import PROFILES, get_profile
from pipeline.run import FeaturesRequest, build_features


def test_demo_features_end_to_end(demo_store):
    log = demo_store.with_suffix(".log").read_text()
    assert "features: 100%" in log and "32/32" in log
    assert re.search(r"^done\s+32$", log, re.MULTILINE)
    result = run_cli("status", "--store", str(demo_store), "--json")
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 32 and {row["status"] for row in rows} == {"done"}
    assert sorted(row["label"] for row in rows) == [0] * 16 + [1] * 16
    assert {row["split"] for row in rows} == {"train", "val", "test"}
    assert {"video_id", "key", "label", "split", "status", "error"} <= set(rows[0])
    table = pd.read_csv(demo_store / "manifest.csv")
    assert (table["status"] == "done").all() and (table["n_flows"] == 90).all()


def test_demo_store_holds_the_declared_arrays(demo_store):
    store = FeatureStore(demo_store, mode="r")
    video = store.open_video(video_key("fake/id03"))
    entry, track = video.entry, video.track()
    assert video["frames"].shape == (1, 96, 256, 256, 3) and video["frames"].dtype == np.uint8
    assert video["flow"].shape == (1, 96, 256, 256, 2) and video["flow"].dtype == np.float16
    assert schema.landmarks_of(track).shape == (1, 96, 68, 2) and schema.boxes_of(track).shape == (1, 96, 4)
    assert track["face_found"].all() and track["flow_valid"].sum() == 90 == entry.counts.flows
    assert np.array_equal(np.unique(np.diff(track["frame_index"][0, :16])), [1])
    assert entry.label == 1 and entry.backends["flow"] == "opencv-cpu" and entry.clip_lengths == (16,) * 6
    assert entry.stage_keys is not None and entry.counts.faces == 1
    assert set(entry.timings_s) >= {"decode", "faces", "crop", "flow", "write"}
    # A video is a handful of files: its group's metadata, and metadata + one shard an array.
    assert sum(1 for path in (demo_store / "videos" / video.key).rglob("*") if path.is_file()) == 7


def test_contact_sheet(demo_store, tmp_path):
    out = tmp_path / "sheet.png"
    result = run_cli("show", "--store", str(demo_store), "fake/id03", "--out", str(out))
    assert result.returncode == 0, result.stderr
    import cv2

    image = cv2.imread(str(out))
    assert image.shape[0] > 300 and image.shape[1] >= 8 * 128


@needs_fixtures
def test_folder_dataset_on_a_real_video(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    os.symlink(FIXTURES / "Megamind.avi", root / "real" / "Megamind.avi")
    videos.write(root / "fake" / "moving face.mp4", videos.moving_face(videos.smooth_path(40)))
    store_path = tmp_path / "store.zarr"
    request = FeaturesRequest("folder", str(root), str(store_path), get_profile("default"), workers=2)
    summary = build_features(request, progress=False)
    assert summary.statuses[Status.DONE] == 2
    store = FeatureStore(store_path, mode="r")
    video = store.open_video(video_key("real/Megamind"))
    frames, found = video["frames"], video.track()["face_found"][0]
    assert frames.dtype == np.uint8 and frames.shape[1:] == (128, 256, 256, 3)
    assert found.mean() >= 0.9, f"face found in {found.mean():.0%} of Megamind's frames"
    assert np.isfinite(video["flow"][...].astype(np.float32)).all()
    assert store.entry(video_key("fake/moving face")).label == 1


@pytest.mark.parametrize(
    "args, named",
    [
        (["features", "--dataset", "celebdfx", "--root", ".", "--store", "s"], "celebdfx"),
        (["features", "--dataset", "folder", "--root", "/nonexistent/root", "--store", "{tmp}/s.zarr"], "/nonexistent/root"),
        (["features", "--dataset", "folder", "--root", "{tmp}", "--store", "{tmp}/s.zarr", "--profile", "fast"], "fast"),
        (["features", "--dataset", "folder", "--root", "{tmp}", "--store", "/proc/dfprep.zarr"], "/proc/dfprep.zarr"),
        (["features", "--dataset", "folder", "--root", "{tmp}", "--store", "{tmp}/s.zarr", "--set", "flow.winsize=x"], "flow.winsize=x"),
        (["features", "--dataset", "folder", "--root", "{tmp}", "--store", "{tmp}/s.zarr", "--set", "flow.speed=3"], "flow.speed"),
        (["status", "--store", "{tmp}/nothing.zarr"], "nothing.zarr"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(tmp_path, args, named):
    videos.write(tmp_path / "real" / "a.mp4", videos.index_frames(4))
    (tmp_path / "fake").mkdir()
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines


def test_unknown_values_list_what_is_allowed(tmp_path):
    result = run_cli("features", "--dataset", "folder", "--root", str(tmp_path), "--store", "s", "--profile", "fast")
    for name in PROFILES:
        assert name in result.stderr
    result = run_cli("features", "--dataset", "nope", "--root", ".", "--store", "s")
    assert "demo" in result.stderr and "folder" in result.stderr
