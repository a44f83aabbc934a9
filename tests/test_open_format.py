"""The store is an open format (docs/STORE.md): zarr-python alone, in an environment that has
never seen dfprep, reads every array of every video; xarray opens a video with named axes;
stores of format 1 are upgraded by one command to what format 1 read."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import CHEAP, ROOT, run_cli, set_options

PROFILES = ("default", "deepfakebench")

READ_EVERYTHING = textwrap.dedent("""
    import sys, numpy as np, zarr
    store, out = sys.argv[1], sys.argv[2]
    root = zarr.open_group(store, mode="r")
    arrays = {}
    for key in root["videos"].group_keys():
        for name, array in root["videos"][key].arrays():
            arrays[f"{key}/{name}"] = array[...]
    np.savez(out, **arrays)
    ours = sorted(m for m in sys.modules if m.split(".")[0] in ("feature_store", "pipeline", "stages", "trainer", "cli"))
    assert not ours, ours
    print(len(arrays), zarr.__version__)
""")


@pytest.fixture(scope="module")
def stores(face_corpus, tmp_path_factory) -> dict[str, Path]:
    """Two real videos through `features` with each profile."""
    folder = tmp_path_factory.mktemp("open")
    root = folder / "videos"
    for name in ("real/v00.mp4", "fake/v01.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(face_corpus / name, root / name)
    made = {}
    for profile in PROFILES:
        made[profile] = folder / f"{profile}.zarr"
        result = run_cli("features", "--dataset", "folder", "--root", str(root), "--store", str(made[profile]),
                         "--profile", profile, *set_options(CHEAP), "--workers", "1")
        assert result.returncode == 0, result.stderr[-3000:]
    return made


@pytest.fixture(scope="module")
def zarr_only_python(tmp_path_factory) -> Path:
    """A fresh virtual environment holding zarr (this one's version) and what it pulls in."""
    venv = tmp_path_factory.mktemp("zarr-only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", f"zarr=={zarr.__version__}"],
                             capture_output=True, text=True, timeout=600)
    if install.returncode:
        pytest.skip(f"cannot install zarr=={zarr.__version__} into a fresh environment (no package index?): "
                    f"{install.stderr.strip().splitlines()[-1:]}")
    return python


@pytest.mark.parametrize("profile", PROFILES)
def test_zarr_alone_reads_every_array_equal_to_what_dfprep_reads(profile, stores, zarr_only_python, tmp_path):
    from feature_store import FeatureStore

    out = tmp_path / "arrays.npz"
    result = subprocess.run([str(zarr_only_python), "-c", READ_EVERYTHING, str(stores[profile]), str(out)],
                            capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    plain = np.load(out)
    store = FeatureStore(stores[profile], mode="r")
    expected = {f"{key}/{name}": array[...] for key in store.keys() for name, array in store.open_video(key).arrays.items()}
    assert sorted(plain.files) == sorted(expected) and len(expected) >= 4
    for name, values in expected.items():
        np.testing.assert_array_equal(plain[name], values, err_msg=name)


def test_xarray_opens_a_video_with_named_dimensions(stores):
    xarray = pytest.importorskip("xarray", reason="xarray is not installed (pip install xarray)")
    from feature_store import FeatureStore

    store = FeatureStore(stores["default"], mode="r")
    key = store.keys()[0]
    video = store.open_video(key)
    dataset = xarray.open_zarr(str(stores["default"]), group=f"videos/{key}", consolidated=False, zarr_format=3)
    assert dataset["frames"].dims == ("face", "frame", "y", "x", "channel")
    assert dataset["flow"].dims == ("face", "frame", "y", "x", "component")
    assert dataset["track"].dims == ("face", "frame", "field")
    assert dataset.sizes["frame"] == video.entry.counts.frames
    np.testing.assert_array_equal(dataset["frames"].isel(face=0, frame=3).values, video["frames"][0, 3])
    # The track's columns are named in its attributes: a table a researcher can select from.
    fields = list(dataset["track"].attrs["fields"])
    frame_index = dataset["track"].isel(face=0, field=fields.index("frame_index")).values
    np.testing.assert_array_equal(frame_index, video.track()["frame_index"][0])


@pytest.mark.parametrize("name", ["store_v1_default", "store_v1_deepfakebench"])
def test_a_format_1_store_is_upgraded_by_one_command_to_what_format_1_read(name, tmp_path):
    """The stores in tests/data were written by dfprep 728bb2c (format 1); the .npz beside
    each holds what that dfprep read from them."""
    from feature_store import FeatureStore, schema

    store = tmp_path / "store.zarr"
    shutil.copytree(ROOT / "tests" / "data" / f"{name}.zarr", store)
    refused = run_cli("status", "--store", str(store))
    assert refused.returncode == 2 and "run `dfprep store upgrade --store" in refused.stderr, refused.stderr
    upgraded = run_cli("store", "upgrade", "--store", str(store))
    assert upgraded.returncode == 0 and "3 videos, 3 rewritten" in upgraded.stdout, upgraded.stderr
    status = run_cli("status", "--store", str(store))
    assert status.returncode == 0 and "3 videos: done 2, no_face 0, failed 1" in status.stdout, status.stdout

    read_by_format_1 = np.load(ROOT / "tests" / "data" / f"{name}.npz")
    upgraded_store = FeatureStore(store, mode="r")
    for key in {name.split("/")[0] for name in read_by_format_1.files}:
        def old(array):
            return read_by_format_1[f"{key}/{array}"]

        video = upgraded_store.open_video(key)
        track = video.track()
        np.testing.assert_array_equal(video[schema.FRAMES][0], old("frames"))
        np.testing.assert_array_equal(track["frame_index"][0], old("frame_index"))
        np.testing.assert_array_equal(track["clip_index"][0], old("clip_index"))
        np.testing.assert_array_equal(track["timestamp_s"][0], old("timestamps_s"))
        np.testing.assert_array_equal(track["face_found"][0], old("face_found"))
        np.testing.assert_array_equal(schema.boxes_of(track)[0], old("boxes"))
        np.testing.assert_array_equal(schema.landmarks_of(track)[0], old("landmarks"))
        np.testing.assert_array_equal(schema.affines_of(track, schema.FRAMES)[0], old("crop_affine"))
        if "flow_pairs" in {name.split("/")[1] for name in read_by_format_1.files if name.startswith(key)}:
            np.testing.assert_array_equal(video[schema.FLOW][0][old("flow_pairs")[:, 0]], old("flow"))
            assert (track["flow_valid"][0][old("flow_pairs")[:, 0]] == 1).all()
            assert track["flow_valid"][0].sum() == len(old("flow_pairs"))
    again = run_cli("store", "upgrade", "--store", str(store))
    assert again.returncode == 0 and "0 rewritten" in again.stdout
