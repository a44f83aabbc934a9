from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
sys.path.insert(0, str(Path(__file__).parent))

needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "Megamind.avi").is_file(),
    reason=f"real media fixtures not found at {FIXTURES} (they ship with the project's shared folder, not with a clone)",
)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """The demo corpus, generated once per test session."""
    from pipeline.sources import demo

    root = tmp_path_factory.mktemp("demo")
    demo.ensure_corpus(root)
    return root


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` in a fresh process, as a user would run it."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def run_here(capsys, *args: str) -> tuple[int, str, str]:
    """`dfprep ARGS` in this process: exit code, stdout, stderr."""
    import cli

    try:
        cli.main(list(args))
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def demo_store(demo_root, tmp_path_factory) -> Path:
    """The whole demo corpus through `features` on a local cluster, once per session."""
    store = tmp_path_factory.mktemp("stores") / "demo.zarr"
    result = run_cli("features", "--dataset", "demo", "--root", str(demo_root), "--store", str(store), "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    store.with_suffix(".log").write_text(result.stdout + result.stderr)
    return store


# Stage parameters that keep a small test video to a fraction of a second: one clip of 8
# frames, 64 px crops.
CHEAP = ("sampling.clips=1", "sampling.clip_length=8", "crop.size=64x64")


def set_options(overrides) -> list[str]:
    """`--set` options for the command line."""
    return [arg for override in overrides for arg in ("--set", override)]


@pytest.fixture(scope="session")
def face_corpus(tmp_path_factory) -> Path:
    """20 small face videos (200x150, 24 frames), 10 under real/ and 10 under fake/, made once
    per session; tests copy it (shutil.copytree keeps mtimes) and change their copy."""
    import videos

    root = tmp_path_factory.mktemp("face_corpus")
    for i in range(20):
        videos.write(root / ("real", "fake")[i % 2] / f"v{i:02d}.mp4", videos.small_face_video(seed=i))
    return root


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """The address of a LocalCluster of two single-threaded worker processes, shared by the
    tests that need a cluster but do not kill its workers."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as local:
        yield local.scheduler_address


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The address of moto's S3 server on 127.0.0.1, started once per session."""
    import logging

    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    """One 6-frame 32x32 video, made once; dataset trees hard-link it to every path they need."""
    import videos

    return videos.write(tmp_path_factory.mktemp("tiny") / "tiny.mp4", videos.texture(32, 32)[None].repeat(6, 0).astype("uint8"))


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """A store written directly (tests/stores.py): 2 train and 2 val videos of one 16-frame
    clip of 32x32 crops with flow, made as the `ofcnn` profile at 32 px would make them."""
    from pipeline.profiles import get_profile
    from stores import write_tiny_store

    path = tmp_path_factory.mktemp("tiny") / "tiny.zarr"
    return write_tiny_store(path, get_profile("ofcnn", ["crop.size=32x32"]), frames=16, size=(32, 32), splits={"train": 1, "val": 1})


@pytest.fixture(scope="session")
def reference_store(face_corpus, cluster, tmp_path_factory) -> Path:
    """The face corpus through an uninterrupted run (CHEAP, `default` profile): what every
    interrupted or distributed run of it must equal."""
    from feature_store.schema import Status
    from pipeline.profiles import get_profile
    from pipeline.run import FeaturesRequest, build_features

    store = tmp_path_factory.mktemp("reference") / "store.zarr"
    request = FeaturesRequest("folder", str(face_corpus), str(store), get_profile("default", list(CHEAP)), scheduler=cluster)
    assert build_features(request, progress=False).statuses[Status.DONE] == 20
    return store


def assert_same_videos(store_url, reference_path: Path, keys=None) -> None:
    """Every video of the reference (or those of `keys`) is in the store, array for array."""
    import numpy as np

    from feature_store import FeatureStore

    store, reference = FeatureStore(store_url, mode="r"), FeatureStore(reference_path, mode="r")
    for key in keys if keys is not None else reference.entries(reference.keys()):
        video, expected = store.open_video(key), reference.open_video(key)
        assert sorted(video.arrays) == sorted(expected.arrays)
        for name in expected.arrays:
            np.testing.assert_array_equal(video[name][...], expected[name][...], err_msg=f"{key}/{name}")
        for name in ("status", "fingerprint", "stage_keys", "counts", "video", "label", "split", "clip_lengths", "thumbnail"):
            assert getattr(video.entry, name) == getattr(expected.entry, name), (key, name)


def status_by_id(store) -> dict[str, dict]:
    """`status --json` of the store, by video id."""
    result = run_cli("status", "--store", str(store), "--json")
    assert result.returncode == 0, result.stderr
    return {row["video_id"]: row for row in map(json.loads, result.stdout.splitlines())}


def stored_groups(store: Path) -> dict[str, bool]:
    """Every group on disk -> whether it carries the completion record, read straight from the files."""
    from feature_store.schema import COMPLETE

    groups = {}
    for folder in (store / "videos").glob("*/"):
        try:
            groups[folder.name] = bool(json.loads((folder / "zarr.json").read_text())["attributes"].get(COMPLETE))
        except (FileNotFoundError, KeyError, ValueError):
            groups[folder.name] = False
    return groups


def wait_for(condition, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)
