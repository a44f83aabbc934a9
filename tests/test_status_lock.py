"""The store lock and `status --rebuild` (issue 19): the rebuild opens only an existing store
and waits for no one (a run holding the lock refuses it), the holder record goes with its
holder, and the message of a refusal never names a process that has ended."""

import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest

from conftest import ROOT, run_cli
from feature_store import FeatureStore
from feature_store.store import LOCK_HOLDER
from stages.errors import StoreLocked
from stores import write_tiny_store

HOLD = """
import sys, time
from feature_store import FeatureStore
import filelock
if sys.argv[2] == "run":
    held = FeatureStore(sys.argv[1]).lock()
    held.__enter__()
else:  # the bare kernel lock, as a run's forked workers keep it a moment after it ended
    held = filelock.FileLock(sys.argv[1] + "/.dfprep.lock")
    held.acquire(timeout=0)
print("held", flush=True)
time.sleep(120)
"""


@contextmanager
def _held(store, how: str):
    """Another process holding the store's lock, as a run does ('run') or without a record."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store), how], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def _ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_holder_record_lives_as_long_as_the_lock(tmp_path):
    store = FeatureStore(tmp_path / "store.zarr")
    with store.lock():
        assert (tmp_path / "store.zarr" / LOCK_HOLDER).read_text().startswith("dfprep run ")
    assert not (tmp_path / "store.zarr" / LOCK_HOLDER).exists()


def test_a_refusal_names_the_holder_only_while_it_lives(tmp_path):
    path = tmp_path / "store.zarr"
    store = FeatureStore(path)
    with _held(path, "run") as pid:
        with pytest.raises(StoreLocked, match=rf"in use by dfprep run {pid} on "):
            with store.lock():
                pass
    # A record left by a run that has ended, while its last processes still hold the lock.
    stale = _ended_pid()
    (path / LOCK_HOLDER).write_text(f"dfprep run {stale} on {socket.gethostname()} since 2026-01-01T00:00:00+00:00\n")
    with _held(path, "bare"):
        with pytest.raises(StoreLocked) as refused:
            with store.lock():
                pass
    assert "in use by another process;" in str(refused.value) and str(stale) not in str(refused.value)


def test_status_rebuild_of_a_mistyped_path_is_one_line_and_creates_nothing(tmp_path):
    result = run_cli("status", "--store", str(tmp_path / "stroe.zarr"), "--rebuild")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not a dfprep store" in result.stderr, result.stderr
    assert not (tmp_path / "stroe.zarr").exists()


def test_status_rebuild_is_refused_while_a_run_holds_the_store(tmp_path):
    from pipeline.profiles import get_profile

    path = write_tiny_store(tmp_path / "store.zarr", get_profile("ofcnn", ["crop.size=32x32"]), frames=16, size=(32, 32),
                            splits={"train": 1})
    (path / "manifest.csv").write_text("what the run wrote last\n")
    with _held(path, "run") as pid:
        refused = run_cli("status", "--store", str(path), "--rebuild")
    assert refused.returncode == 1 and f"in use by dfprep run {pid}" in refused.stderr, refused.stderr
    assert (path / "manifest.csv").read_text() == "what the run wrote last\n"
    rebuilt = run_cli("status", "--store", str(path), "--rebuild")
    assert rebuilt.returncode == 0 and rebuilt.stdout.startswith("2 videos: done 2"), rebuilt.stdout + rebuilt.stderr
    assert not (path / LOCK_HOLDER).exists()
