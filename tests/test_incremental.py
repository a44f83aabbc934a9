"""Re-runs do exactly the work that is missing, and the summary counts it (issue 5, point 1).
The counters are asserted; timings are reported by the README, never asserted."""

import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

import videos
from conftest import CHEAP, run_cli, set_options
from feature_store import FeatureStore, video_key
from pipeline.profiles import get_profile
from pipeline.run import FeaturesRequest, build_features


def _chunk_mtimes(store_path: Path, key: str, array: str) -> dict[str, int]:
    folder = store_path / "videos" / key / array
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_reruns_do_exactly_the_missing_work(face_corpus, cluster, tmp_path):
    root, store_path = tmp_path / "root", tmp_path / "store.zarr"
    shutil.copytree(face_corpus, root)

    def run(*overrides: str):
        profile = get_profile("default", [*CHEAP, *overrides])
        return build_features(FeaturesRequest("folder", str(root), str(store_path), profile, scheduler=cluster), progress=False)

    first = run()
    assert (first.videos, first.processed, first.skipped) == (20, 20, 0)
    assert first.stage_runs == Counter(decode=20, faces=20, flow=20) and first.statuses["done"] == 20

    unchanged = run()
    assert (unchanged.processed, unchanged.skipped, unchanged.stage_runs) == (0, 20, Counter())

    videos.write(root / "fake" / "added.mp4", videos.small_face_video(seed=100))
    added = run()
    assert (added.videos, added.processed, added.skipped) == (21, 1, 20)
    assert added.stage_runs == Counter(decode=1, faces=1, flow=1)

    # A touch changes the mtime, not the content: hashed once, then remembered.
    store = FeatureStore(store_path, mode="r")
    touched, rewritten = root / "real" / "v00.mp4", root / "real" / "v02.mp4"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    videos.write(rewritten, videos.small_face_video(seed=200))
    changed = run()
    assert (changed.processed, changed.skipped, changed.relabelled) == (1, 20, 0)
    assert changed.stage_runs == Counter(decode=1, faces=1, flow=1)
    assert store.entry(video_key("real/v00")).fingerprint.mtime_ns == touched.stat().st_mtime_ns

    keys = sorted(store.entries(store.keys()))
    before = {key: store.entry(key) for key in keys}
    frames_written = {key: _chunk_mtimes(store_path, key, "frames") for key in keys}
    flow_before = store.open_video(keys[0])["flow"][...]
    flow_changed = run("flow.winsize=21")
    assert (flow_changed.processed, flow_changed.stage_runs) == (21, Counter(flow=21))
    for key in keys:
        after = store.entry(key)
        assert after.stage_keys.faces == before[key].stage_keys.faces
        assert after.stage_keys.flow != before[key].stage_keys.flow
        assert after.config["flow"]["winsize"] == 21
        # Nothing decoded: the crops' chunk files were not even rewritten.
        assert _chunk_mtimes(store_path, key, "frames") == frames_written[key]
        assert after.timings_s["decode"] == before[key].timings_s["decode"]
    assert not np.array_equal(store.open_video(keys[0])["flow"][...], flow_before)

    faces_changed = run("flow.winsize=21", "faces.detect_interval=2")
    assert (faces_changed.processed, faces_changed.stage_runs) == (21, Counter(decode=21, faces=21, flow=21))

    settled = run_cli("features", "--dataset", "folder", "--root", str(root), "--store", str(store_path),
                      "--scheduler", cluster, *set_options([*CHEAP, "flow.winsize=21", "faces.detect_interval=2"]))
    assert settled.returncode == 0, settled.stderr[-2000:]
    assert re.search(r"^processed\s+0  stages run: decode 0, faces 0, flow 0$", settled.stdout, re.MULTILINE)
    assert re.search(r"^skipped\s+21  unchanged$", settled.stdout, re.MULTILINE)
    assert "dashboard:" not in settled.stdout, "a run with nothing to do starts no cluster"

