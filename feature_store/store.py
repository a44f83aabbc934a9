"""The Zarr v3 feature store: one group per video under `videos/<key>`, made visible by a
completion flag in the group's attributes, written last."""

from __future__ import annotations

import datetime
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock
import fsspec
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from feature_store import frames
from stages.errors import StoreError, StoreLocked

COMPLETE = "dfprep_complete"
VIDEOS = "videos"
LOCK, LOCK_HOLDER = ".dfprep.lock", ".dfprep.lock.holder"
# Arrays with a frame axis are chunked along it; the rest are one chunk.
FRAME_AXIS_ARRAYS = ("frames", "flow")
# Flow and the small arrays: LZ4 on bit planes writes float16 flow at 1 GB/s and reads it at
# 2 GB/s, two and three times Blosc-zstd's speeds, for 10% more bytes (1.39x against 1.53x).
_COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")

# Every chunk written holds data: zarr's check of each one against the fill value, a compare
# of the whole chunk that would let it skip an empty one, costs 5% of a worker's time.
_WRITE_CONFIG = {"write_empty_chunks": True}


class FeatureStore:
    """Reads and writes a store at a local path or an fsspec URL (`s3://`, `gs://`, `file://`)."""

    def __init__(self, url: str | Path, mode: str = "a"):
        self.url = str(url)
        try:
            self.root = zarr.open_group(self.url, mode=mode, zarr_format=3)
        except (OSError, ValueError, zarr.errors.BaseZarrError) as exc:
            raise StoreError(f"cannot open store {self.url}: {exc}") from exc
        self.fs, self.path = fsspec.core.url_to_fs(self.url)

    @property
    def is_local(self) -> bool:
        return "file" in self.fs.protocol or "local" in self.fs.protocol

    # -- reading -------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Keys of every group under videos/, complete or not."""
        if VIDEOS not in self.root:
            return []
        return sorted(self.root[VIDEOS].group_keys())

    def attrs(self, key: str) -> dict | None:
        """The video's attributes, or None if it is absent or not complete."""
        try:
            attrs = self.root[f"{VIDEOS}/{key}"].attrs.asdict()
        except (KeyError, json.JSONDecodeError, FileNotFoundError):
            return None
        return attrs if attrs.get(COMPLETE) else None

    def complete_attrs(self) -> dict[str, dict]:
        return {key: attrs for key in self.keys() if (attrs := self.attrs(key)) is not None}

    def video(self, key: str) -> zarr.Group:
        """The complete group of a video, for lazy array access."""
        if self.attrs(key) is None:
            raise StoreError(f"{self.url}: video {key} is not in the store or not complete")
        return self.root[f"{VIDEOS}/{key}"]

    def read(self, key: str, name: str) -> np.ndarray:
        try:
            return self.video(key)[name][...]
        except KeyError as exc:
            raise StoreError(f"{self.url}: video {key} has no array {name!r}") from exc

    # -- writing -------------------------------------------------------------------------

    def write_video(self, key: str, arrays: dict[str, np.ndarray], attrs: dict, chunk_frames: int = 16) -> int:
        """Replace the video's group with these arrays and attributes; bytes the group holds."""
        try:
            group = self.root.create_group(f"{VIDEOS}/{key}", overwrite=True)
            for name, data in arrays.items():
                self._write_array(group, name, data, chunk_frames)
            group.update_attributes({**attrs, COMPLETE: True})
            return _bytes_stored(group)
        except (OSError, ValueError, zarr.errors.BaseZarrError) as exc:
            raise StoreError(f"{self.url}: writing video {key} failed: {exc}") from exc

    def update_video(self, key: str, arrays: dict[str, np.ndarray], attrs: dict, chunk_frames: int = 16) -> int:
        """Rewrite some arrays of a complete video and merge attributes; bytes the group holds.
        The video is hidden (not complete) while this runs."""
        try:
            group = self.root[f"{VIDEOS}/{key}"]
            group.update_attributes({COMPLETE: False})
            for name, data in arrays.items():
                self._write_array(group, name, data, chunk_frames)
            group.update_attributes({**attrs, COMPLETE: True})
            return _bytes_stored(group)
        except (KeyError, OSError, ValueError, zarr.errors.BaseZarrError) as exc:
            raise StoreError(f"{self.url}: updating video {key} failed: {exc}") from exc

    def update_attrs(self, key: str, attrs: dict) -> None:
        """Merge attributes into a video's group; the group's metadata file is replaced whole."""
        try:
            self.root[f"{VIDEOS}/{key}"].update_attributes(attrs)
        except (KeyError, OSError, zarr.errors.BaseZarrError) as exc:
            raise StoreError(f"{self.url}: updating attributes of video {key} failed: {exc}") from exc

    @staticmethod
    def _write_array(group: zarr.Group, name: str, data: np.ndarray, chunk_frames: int) -> None:
        chunks = data.shape
        if name.split("_")[0] in FRAME_AXIS_ARRAYS and data.ndim and data.shape[0]:
            chunks = (min(chunk_frames, data.shape[0]),) + data.shape[1:]
        chunks = tuple(max(1, c) for c in chunks)
        image = data.dtype == np.uint8 and data.ndim == 4 and data.shape[-1] == 3
        array = group.create_array(
            name, shape=data.shape, dtype=data.dtype, chunks=chunks, overwrite=True,
            filters=frames.FILTERS if image else None,
            compressors=frames.COMPRESSOR if image else _COMPRESSOR,
            config=_WRITE_CONFIG,
        )
        if data.size:
            array[...] = data

    # -- files beside the groups ---------------------------------------------------------

    def write_text(self, name: str, text: str) -> None:
        """Write a file at the store's root in one step: readers see the old or the new one."""
        target = f"{self.path}/{name}"
        if self.is_local:
            # A name of its own, so that two writers (a run, `status --rebuild`) never share one.
            partial = Path(f"{target}.{uuid.uuid4().hex}.partial")
            partial.write_text(text)
            partial.replace(target)
        else:
            self.fs.pipe_file(target, text.encode())

    def read_text(self, name: str) -> str | None:
        try:
            return self.fs.cat_file(f"{self.path}/{name}").decode()
        except FileNotFoundError:
            return None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store for one run; a second run is refused at once, told who holds it.
        Only local stores can be locked; on object stores two runs must not be started
        against one URL. The lock is the kernel's (flock): a killed run leaves none behind."""
        if not self.is_local:
            yield
            return
        lock = filelock.FileLock(f"{self.path}/{LOCK}")
        holder_path = Path(self.path) / LOCK_HOLDER
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            # The record names the holder only while that process lives: a run killed a moment
            # ago leaves its record, and its workers hold the lock until they exit.
            record = (self.read_text(LOCK_HOLDER) or "").strip()
            words = record.split()  # dfprep run PID on HOST since TIME
            named = len(words) == 7 and words[:2] == ["dfprep", "run"] and words[2].isdigit()
            if named and words[4] == socket.gethostname():
                try:
                    os.kill(int(words[2]), 0)
                except ProcessLookupError:
                    named = False
                except PermissionError:  # alive, another user's
                    pass
            holder = record if named else "another process"
            raise StoreLocked(f"store {self.url} is in use by {holder}; wait for it to finish or use another --store") from None
        try:
            started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            self.write_text(LOCK_HOLDER, f"dfprep run {os.getpid()} on {socket.gethostname()} since {started}\n")
            yield
        finally:
            # Removed while still held: no other process writes a record before the release.
            holder_path.unlink(missing_ok=True)
            lock.release()


def _bytes_stored(group: zarr.Group) -> int:
    return sum(array.nbytes_stored() for _, array in group.arrays())
