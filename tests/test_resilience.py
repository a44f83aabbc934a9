"""Runs that survive what real runs meet (issue 5, points 2 to 4): broken and hanging inputs,
`kill -9` of the client or of a worker, a second run on a busy store, ids of any shape."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import psutil
from distributed import Client, LocalCluster

import videos
from conftest import CHEAP, ROOT, assert_same_videos, run_cli, set_options, status_by_id, stored_groups, wait_for
from feature_store import FeatureStore
from feature_store.store import LOCK_HOLDER
from pipeline.profiles import get_profile
from pipeline.run import FeaturesRequest, build_features

# Good copies under names a shell, a path join or a CSV would trip on.
AWKWARD_NAMES = ["real/with space.mp4", "fake/vidéo 日本.mp4", "fake/$(touch pwned); `x` | y.mp4", "real/-rf.mp4", "real/...mp4", "real/new\nline.mp4"]


def _features(root: Path, store: Path, *options: str) -> list[str]:
    return ["features", "--dataset", "folder", "--root", str(root), "--store", str(store), *set_options(CHEAP), *options]


def _broken_inputs(root: Path) -> dict[str, tuple[str, str]]:
    """Write every kind of bad input beside good ones; video id -> (status, error prefix)."""
    good = videos.write(root / "real" / "good.mp4", videos.small_face_video(seed=1))
    data = good.read_bytes()
    (root / "fake").mkdir()
    (root / "real" / "zero bytes.mp4").write_bytes(b"")
    (root / "real" / "text.mp4").write_text("this is not a video\n")
    (root / "fake" / "truncated.mp4").write_bytes(data[: len(data) * 6 // 10])
    avi = videos.write(root / "fake" / "whole.avi", videos.small_face_video(seed=2), codec="mpeg4")
    (root / "fake" / "cut short.avi").write_bytes(avi.read_bytes()[: avi.stat().st_size * 6 // 10])
    avi.unlink()
    damaged = bytearray(data)
    damaged[len(data) // 2 : len(data) // 2 + 2000] = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    (root / "fake" / "corrupt middle.mp4").write_bytes(bytes(damaged))
    with av.open(str(root / "real" / "audio only.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    videos.write(root / "real" / "one frame.mp4", videos.small_face_video(seed=3)[:1])
    # 4:4:4, since 4:2:0 cannot hold odd sizes.
    with av.open(str(root / "fake" / "odd 201x151.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 201, 151, "yuv444p"
        for frame in videos.small_face_video(seed=4, height=151, width=201):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    videos.write(root / "real" / "faceless.mp4", np.repeat(videos.texture(150, 200).astype(np.uint8)[None], 24, axis=0))
    os.symlink(root / "gone.mp4", root / "fake" / "dangling link.mp4")
    (root / "fake" / "a folder.mp4").mkdir()
    for name in AWKWARD_NAMES:
        shutil.copy(good, root / name)
    expected = {
        "real/good": ("done", ""),
        "real/zero bytes": ("failed", "unreadable: empty file"),
        "real/text": ("failed", "unreadable: Invalid data"),
        "fake/truncated": ("failed", "unreadable: Invalid data"),
        "fake/cut short": ("failed", "truncated: decoded 1 of 24 frames"),
        "fake/corrupt middle": ("failed", "corrupt: decoding failed after frame"),
        "real/audio only": ("failed", "no video stream: streams found: audio"),
        "real/one frame": ("done", ""),
        "fake/odd 201x151": ("done", ""),
        "real/faceless": ("no_face", "no face: no face in"),
        "fake/dangling link": ("failed", "unreadable: broken link to"),
    }
    return expected | {str(Path(name).with_suffix("")): ("done", "") for name in AWKWARD_NAMES}


def _tree(folder: Path, skip: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_mtime_ns for p in folder.rglob("*") if skip not in p.parents and p != skip}


def test_broken_inputs_each_end_in_one_status_with_a_reason(tmp_path, cluster):
    root, store = tmp_path / "root", tmp_path / "store.zarr"
    expected = _broken_inputs(root)
    before = _tree(tmp_path, store)
    result = run_cli(*_features(root, store, "--scheduler", cluster))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    rows = status_by_id(store)
    assert set(rows) == set(expected)
    for video_id, (status, reason) in expected.items():
        row = rows[video_id]
        assert (row["status"], row["error"][: len(reason)]) == (status, reason), (video_id, row["error"])
        assert "\n" not in row["error"] and "Errno" not in row["error"] and len(row["error"].replace(str(root), "")) < 100
    assert (rows["real/one frame"]["n_frames"], rows["real/one frame"]["n_flows"]) == (1, 0)
    assert all("/" not in row["key"] and row["key"] not in (".", "..") and (store / "videos" / row["key"]).is_dir() for row in rows.values())
    # Nothing was written outside the store, and no name was ever run by a shell.
    assert _tree(tmp_path, store) == before
    assert not list(tmp_path.rglob("pwned")) and not (ROOT / "pwned").exists()

    rerun = run_cli(*_features(root, store, "--scheduler", cluster))
    assert "\nprocessed       0  stages run: decode 0, faces 0, flow 0\n" in rerun.stdout, rerun.stdout
    failed = sum(status == "failed" for status, _ in expected.values())
    retried = run_cli(*_features(root, store, "--scheduler", cluster, "--retry-failed"))
    assert f"\nprocessed {failed:>7}  stages run: decode {failed}, faces 0, flow 0\n" in retried.stdout, retried.stdout
    assert {video_id: row["status"] for video_id, row in status_by_id(store).items()} == {k: v[0] for k, v in expected.items()}


def test_a_video_that_hangs_its_decoder_times_out_and_the_run_goes_on(face_corpus, tmp_path):
    root, store = tmp_path / "root", tmp_path / "store.zarr"
    for name in ("real/v00.mp4", "real/v02.mp4", "fake/v01.mp4", "fake/v03.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(face_corpus / name, root / name)
    # A FIFO nobody writes to: opening it blocks inside FFmpeg, in C, for ever.
    os.mkfifo(root / "fake" / "stuck.mp4")
    # Whole-frame crops: no face models to load, so the good videos are far inside the limit.
    options = ("--workers", "2", "--set", "crop.mode=frame")
    result = run_cli(*_features(root, store, *options, "--video-timeout", "5"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = status_by_id(store)
    assert rows.pop("fake/stuck")["error"] == "timeout: decode still running after 5 s"
    assert {row["status"] for row in rows.values()} == {"done"} and len(rows) == 4
    assert "failed  fake/stuck: timeout" in result.stdout
    # Recorded, so the next run skips it (without opening the FIFO) until --retry-failed.
    rerun = run_cli(*_features(root, store, *options), timeout=120)
    assert "\nprocessed       0  " in rerun.stdout and "\nfailed          1" in rerun.stdout


def test_a_client_killed_mid_run_resumes_to_the_store_of_an_uninterrupted_run(face_corpus, reference_store, tmp_path):
    store = tmp_path / "store.zarr"
    args = _features(face_corpus, store, "--workers", "2")
    client = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def mid_write() -> bool:
        groups = stored_groups(store)
        done = sum(groups.values())
        # Best of all while a group is half written; in any case before the run ends.
        return (done >= 3 and len(groups) > done) or done >= 10

    wait_for(mid_write, "three videos stored")
    workers = psutil.Process(client.pid).children(recursive=True)
    client.send_signal(signal.SIGKILL)
    client.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "worker processes outlived their client"

    on_disk = stored_groups(store)
    opened = FeatureStore(store, mode="r")
    visible = opened.entries(opened.keys())
    assert set(visible) == {key for key, complete in on_disk.items() if complete}
    assert 3 <= len(visible) < 20, "the kill came after the run had finished"
    # What readers see is whole; a half-written group is not seen at all, nor listed by a
    # manifest rebuilt from the groups.
    assert_same_videos(store, reference_store, keys=visible)
    rebuilt = run_cli("status", "--store", str(store), "--rebuild", "--json")
    assert {json.loads(line)["key"] for line in rebuilt.stdout.splitlines()} == set(visible)

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"\nprocessed {20 - len(visible):>7}  " in resumed.stdout and f"\nskipped {len(visible):>9}  unchanged" in resumed.stdout
    assert {row["status"] for row in status_by_id(store).values()} == {"done"}
    assert_same_videos(store, reference_store)


def test_a_worker_killed_mid_run_is_replaced_and_its_video_redone(face_corpus, reference_store, tmp_path):
    store = tmp_path / "store.zarr"
    summary = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        request = FeaturesRequest("folder", str(face_corpus), str(store), get_profile("default", list(CHEAP)),
                                  scheduler=cluster.scheduler_address)
        run = threading.Thread(target=lambda: summary.update(result=build_features(request, progress=False)))
        run.start()
        wait_for(lambda: sum(stored_groups(store).values()) >= 3, "three videos stored")
        busy = [worker for worker, keys in client.processing().items() if any(str(k).startswith("video-") for k in keys)]
        assert busy, "the kill came after the run had finished"
        pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        run.join(timeout=300)
    result = summary["result"]
    assert (result.processed, result.statuses["done"]) == (20, 20)
    assert_same_videos(store, reference_store)


def test_a_second_run_on_a_busy_store_is_refused_and_the_first_is_unharmed(face_corpus, reference_store, tmp_path):
    store = tmp_path / "store.zarr"
    args = _features(face_corpus, store, "--workers", "2")
    log = tmp_path / "first.log"
    with open(log, "w") as output:
        first = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, stdout=output, stderr=output)
    holder = store / LOCK_HOLDER
    wait_for(lambda: holder.is_file() and f"dfprep run {first.pid} " in holder.read_text(), "the first run to hold the store")
    second = run_cli(*args)
    assert second.returncode == 1
    message = second.stderr.strip().splitlines()
    assert len(message) == 1 and f"is in use by dfprep run {first.pid} on " in message[0], message
    assert str(store) in message[0] and "wait for it to finish" in message[0]
    assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert {row["status"] for row in status_by_id(store).values()} == {"done"}
    assert_same_videos(store, reference_store)
