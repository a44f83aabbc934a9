"""The Zarr v3 feature store, format 2 (docs/STORE.md): one group per video under
`videos/<key>`, each array one shard of standard codecs, and a completion record written last
that names every array; readers verify it and never see half a video or zeros."""

from __future__ import annotations

import datetime
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import filelock
import fsspec
import numpy as np
import zarr
from zarr.storage import LocalStore

from feature_store import frames
from feature_store.lease import object_lease
from feature_store.schema import (
    COMPLETE, FORMAT, FORMAT_ATTR, GENERATION, TRACK, VIDEOS, ArrayData, ArrayKind, IndexRow, VideoEntry,
)
from stages.errors import StoreError, StoreFormatError, StoreLocked

LOCK, LOCK_HOLDER = ".dfprep.lock", ".dfprep.lock.holder"
# Every chunk written holds data: zarr's check of each one against the fill value, a compare
# of the whole chunk that would let it skip an empty one, costs 5% of a worker's time.
_WRITE_CONFIG = {"write_empty_chunks": True}
_ERRORS = (OSError, ValueError, KeyError, zarr.errors.BaseZarrError)


class FeatureStore:
    """A store at a local path or an fsspec URL (`s3://`, `gs://`, `file://`). Mode "r" opens
    an existing store; "a" opens or creates one. A store of another format is refused with
    what to do about it, unless `any_format` (the upgrade reads format 1 with it)."""

    def __init__(self, url: str | Path, mode: str = "a", any_format: bool = False):
        self.url = str(url)
        try:
            self.root = zarr.open_group(self.url, mode=mode, zarr_format=3)
            self.fs, self.path = fsspec.core.url_to_fs(self.url)
            self.format = self.root.attrs.get(FORMAT_ATTR)
            if self.format is None and mode != "r" and VIDEOS not in self.root:
                self.root.update_attributes({FORMAT_ATTR: FORMAT})
                self.format = FORMAT
        except (OSError, ValueError, zarr.errors.BaseZarrError) as exc:
            raise StoreError(f"cannot open store {self.url}: {exc}") from exc
        self.format = self.format or 1
        if self.format != FORMAT and not any_format:
            if self.format < FORMAT:
                raise StoreFormatError(f"store {self.url} is in format {self.format}; this dfprep reads format {FORMAT}: "
                                       f"run `dfprep store upgrade --store {self.url}` (rewrites it in place)")
            raise StoreFormatError(f"store {self.url} is in format {self.format}, newer than this dfprep's {FORMAT}: upgrade dfprep")

    @property
    def is_local(self) -> bool:
        return isinstance(self.root.store, LocalStore)

    # -- reading -------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Keys of every group under videos/, complete or not: one listing."""
        if VIDEOS not in self.root:
            return []
        return sorted(self.root[VIDEOS].group_keys())

    def entries(self, keys: list[str]) -> dict[str, tuple[VideoEntry, str]]:
        """Entry and generation of each complete video among `keys`, their metadata files
        read concurrently (one request each on an object store, all in flight together)."""
        paths = [f"{self.path}/{VIDEOS}/{key}/zarr.json" for key in keys]
        blobs = self.fs.cat(paths, on_error="return") if paths else {}
        found = {}
        for key, path in zip(keys, paths):
            blob = blobs.get(path) if isinstance(blobs, dict) else None
            if isinstance(blob, bytes | bytearray):
                attrs = _json(blob).get("attributes", {})
                if isinstance(attrs.get(COMPLETE), dict):
                    found[key] = (VideoEntry.from_attrs(attrs), attrs[COMPLETE]["generation"])
        return found

    def entry(self, key: str) -> VideoEntry | None:
        """The video's entry, or None if it is absent or not complete."""
        found = self.entries([key])
        return found[key][0] if key in found else None

    def open_video(self, key: str, generation: str | None = None) -> StoredVideo:
        """A complete video's arrays, verified against its completion record (and against
        the index's `generation`, when given): one clear error on any mismatch, never zeros."""
        try:
            group = zarr.open_group(self.url, path=f"{VIDEOS}/{key}", mode="r", zarr_format=3)
            attrs = group.attrs.asdict()
        except (FileNotFoundError, *_ERRORS) as exc:
            raise StoreError(f"{self.url}: video {key} is not in the store ({exc})") from exc
        record = attrs.get(COMPLETE)
        video_id = attrs.get("video_id", key)
        if not isinstance(record, dict):
            raise StoreError(f"{self.url}: video {video_id} ({key}) is not complete: it is being written, or its run died; "
                             "rerun features")
        if generation is not None and record["generation"] != generation:
            raise StoreError(f"{self.url}: video {video_id} ({key}) was rewritten after the index was read; "
                             "open the store again")
        arrays = {}
        for name, expected in record["arrays"].items():
            try:
                array = group[name]
                size = self._object_size(array)
            except (FileNotFoundError, *_ERRORS):
                array, size = None, None
            problem = _mismatch(array, size, expected)
            if problem:
                raise StoreError(f"{self.url}: video {video_id} ({key}) is incomplete: array {name} {problem}; "
                                 "rerun features to rewrite it")
            arrays[name] = array
        return StoredVideo(key, VideoEntry.from_attrs(attrs), record["generation"], arrays)

    def _object_size(self, array: zarr.Array) -> int:
        """Bytes of the one object holding the array's data (its shard or single chunk)."""
        return self.fs.size(self.object_path(array))

    def object_path(self, array: zarr.Array) -> str:
        key = array.metadata.encode_chunk_key((0,) * array.ndim)
        return f"{self.path}/{array.path}/{key}"

    # -- writing -------------------------------------------------------------------------

    def write_video(self, key: str, entry: VideoEntry, arrays: dict[str, ArrayData], chunk_frames: int = 16) -> IndexRow:
        """Replace the video's group: hidden while written, complete once its record is."""
        try:
            group = self.root.create_group(f"{VIDEOS}/{key}", overwrite=True)
            written = self._write_arrays(group, arrays, chunk_frames)
            return self._commit(group, key, entry, written)
        except _ERRORS as exc:
            raise StoreError(f"{self.url}: writing video {key} failed: {exc}") from exc

    def update_video(self, key: str, entry: VideoEntry, arrays: dict[str, ArrayData], chunk_frames: int = 16) -> IndexRow:
        """Rewrite some arrays of a complete video (flow, when only flow changed); the video
        is hidden while this runs, and its other arrays stay as recorded."""
        try:
            group = self.root[f"{VIDEOS}/{key}"]
            record = group.attrs[COMPLETE]
            group.update_attributes({COMPLETE: None})
            written = {**record["arrays"], **self._write_arrays(group, arrays, chunk_frames)}
            return self._commit(group, key, entry, written)
        except _ERRORS as exc:
            raise StoreError(f"{self.url}: updating video {key} failed: {exc}") from exc

    def update_entry(self, key: str, entry: VideoEntry) -> IndexRow:
        """New attributes for a complete video (a relabel, timings); its arrays are untouched."""
        try:
            group = self.root[f"{VIDEOS}/{key}"]
            record = group.attrs[COMPLETE]
            group.update_attributes({**entry.to_attrs(), COMPLETE: record})
            return IndexRow(key, entry, record["generation"])
        except _ERRORS as exc:
            raise StoreError(f"{self.url}: updating attributes of video {key} failed: {exc}") from exc

    def _write_arrays(self, group: zarr.Group, named: dict[str, ArrayData], chunk_frames: int) -> dict[str, dict]:
        generation = uuid.uuid4().hex
        written = {}
        for name, item in named.items():
            data = item.data
            array = group.create_array(
                name, shape=data.shape, dtype=data.dtype, dimension_names=item.dims, config=_WRITE_CONFIG,
                attributes={**item.attributes, GENERATION: generation}, overwrite=True,
                **_layout(item.kind, data.shape, item.dims, chunk_frames),
            )
            array[...] = data
            written[name] = {"generation": generation, "shape": list(data.shape), "bytes": self._object_size(array)}
        return written

    def _commit(self, group: zarr.Group, key: str, entry: VideoEntry, written: dict[str, dict]) -> IndexRow:
        generation = uuid.uuid4().hex
        entry = entry.replace(arrays=tuple(written), bytes_stored=sum(info["bytes"] for info in written.values()))
        group.update_attributes({**entry.to_attrs(), COMPLETE: {"generation": generation, "arrays": written}})
        return IndexRow(key, entry, generation)

    # -- files beside the groups ---------------------------------------------------------

    def write_text(self, name: str, text: str) -> None:
        """Write a file at the store's root in one step: readers see the old or the new one."""
        target = f"{self.path}/{name}"
        try:
            if self.is_local:
                # A name of its own, so that two writers (a run, `status --rebuild`) never share one.
                partial = Path(f"{target}.{uuid.uuid4().hex}.partial")
                partial.write_text(text)
                partial.replace(target)
            else:
                self.fs.pipe_file(target, text.encode())
        except OSError as exc:
            raise StoreError(f"{self.url}: writing {name} failed: {exc.strerror or exc}") from exc

    def read_text(self, name: str) -> str | None:
        try:
            return self.fs.cat_file(f"{self.path}/{name}").decode()
        except FileNotFoundError:
            return None

    def set_root_attrs(self, attrs: dict) -> None:
        try:
            self.root.update_attributes(attrs)
        except _ERRORS as exc:
            raise StoreError(f"{self.url}: writing the root group's attributes failed: {exc}") from exc

    def check_held(self) -> None:
        """StoreLocked if this run's lease was taken over (it stalled past its expiry): what
        it would write now could overwrite a newer run's."""
        if getattr(self, "_lease", None) is not None:
            self._lease.check()

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store for one run; a second run is refused at once, told who holds it.
        Locally the lock is the kernel's (flock): a killed run leaves none behind. On S3 it is
        a lease object (feature_store/lease.py) that expires when its run stops renewing it."""
        if not self.is_local:
            with object_lease(self.fs, self.path) as self._lease:
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


@dataclass(frozen=True)
class StoredVideo:
    """A verified video group: its entry and its arrays (lazy zarr arrays)."""

    key: str
    entry: VideoEntry
    generation: str
    arrays: dict[str, zarr.Array]

    def __getitem__(self, name: str) -> zarr.Array:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def track(self) -> dict[str, np.ndarray]:
        """The track table as columns: name -> float64 (faces, T)."""
        table = self.arrays[TRACK]
        values = table[...]
        return {name: values[..., i] for i, name in enumerate(table.attrs["fields"])}


def _layout(kind: ArrayKind, shape: tuple[int, ...], dims: tuple[str, ...], chunk_frames: int) -> dict:
    """Chunks, shards and codecs of an array: images and flow in one shard whose inner chunk
    is a clip of one face, so a loader reads a clip by range; the track table in one chunk."""
    if kind is ArrayKind.TABLE:
        return {"chunks": tuple(max(1, n) for n in shape), "compressors": frames.TABLE_COMPRESSOR}
    frame_axis = dims.index("frame")
    inner = tuple(1 if axis < frame_axis else max(1, min(chunk_frames, n)) if axis == frame_axis else max(1, n)
                  for axis, n in enumerate(shape))
    shard = tuple(-(-max(1, n) // c) * c for n, c in zip(shape, inner))
    if kind is ArrayKind.IMAGES:
        return {"chunks": inner, "shards": shard, "filters": frames.image_filters(len(shape)), "compressors": frames.IMAGE_COMPRESSOR}
    return {"chunks": inner, "shards": shard, "compressors": frames.FLOW_COMPRESSOR}


def _mismatch(array: zarr.Array | None, size: int | None, expected: dict) -> str:
    if array is None:
        return "is missing"
    if array.attrs.get(GENERATION) != expected["generation"]:
        return "is from another write than its record names"
    if list(array.shape) != expected["shape"]:
        return f"has shape {list(array.shape)}, its record says {expected['shape']}"
    if size != expected["bytes"]:
        return f"holds {size} bytes, its record says {expected['bytes']}"
    return ""


def _json(blob: bytes) -> dict:
    try:
        value = json.loads(blob)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
