"""A store that cannot be written or read is the store's fault, never a video's: the run stops
with one line and the next run redoes what was not stored; read commands say it in one line."""

import contextlib
import json
import shutil
import subprocess

import pytest

from conftest import CHEAP, run_cli, set_options, status_by_id


@contextlib.contextmanager
def small_filesystem(path, size: str):
    """A tmpfs of `size` mounted at `path`; skips where this process may not mount one."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_stops_the_run_in_one_line_and_the_next_run_redoes_the_videos(face_corpus, tmp_path):
    root = tmp_path / "videos"
    for name in ("real/v00.mp4", "fake/v01.mp4", "real/v02.mp4", "fake/v03.mp4", "real/v04.mp4", "fake/v05.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(face_corpus / name, root / name)
    with small_filesystem(tmp_path / "small", "160k") as small:
        store = small / "store.zarr"
        args = ["features", "--dataset", "folder", "--root", str(root), "--store", str(store), *set_options(CHEAP), "--workers", "1"]
        full = run_cli(*args)
        assert full.returncode == 1, (full.returncode, full.stdout[-2000:], full.stderr[-2000:])
        last = full.stderr.strip().splitlines()[-1]
        assert "Traceback" not in full.stderr and last.startswith("dfprep: run stopped: ") and "No space left on device" in last, last
        assert "the next run resumes" in last
        # Nothing is recorded against a video for the store's fault.
        recorded = status_by_id(store) if (store / "zarr.json").is_file() else {}
        assert all(row["status"] == "done" for row in recorded.values()), recorded
        assert len(recorded) < 6, "the disk did not fill"

        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        again = run_cli(*args)
        assert again.returncode == 0, again.stderr[-2000:]
        rows = status_by_id(store)
        assert len(rows) == 6 and {row["status"] for row in rows.values()} == {"done"}


def test_read_commands_turn_a_video_being_rewritten_into_one_line(tiny_store, tmp_path):
    """The index names a video whose group a run is rewriting: export, train and evaluate say
    so in one line, exit 1, no traceback."""
    store = tmp_path / "store.zarr"
    shutil.copytree(tiny_store, store)
    group = next(path for path in (store / "videos").iterdir() if path.is_dir())
    metadata = json.loads((group / "zarr.json").read_text())
    metadata["attributes"]["dfprep_complete"] = None  # what a rewrite in progress leaves
    (group / "zarr.json").write_text(json.dumps(metadata))
    commands = {
        "export": ["export", "--store", str(store), "--format", "deepfakebench", "--out", str(tmp_path / "out")],
        "train": ["train", "--store", str(store), "--model", "meso4", "--out", str(tmp_path / "run"), "--epochs", "1",
                  "--input", "size=32x32"],
    }
    for name, args in commands.items():
        result = run_cli(*args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (name, result.stderr[-2000:])
        assert f"{group.name}) is not complete" in result.stderr.strip().splitlines()[-1], (name, result.stderr)
