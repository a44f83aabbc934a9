"""How arrays are encoded, and the loader's fast read of face crops.

Only codecs that zarr-python resolves on its own: a frames array is ([face,] T, H, W, 3) uint8
to every reader; each inner chunk (one clip of one face) is stored planar (zarr's `transpose`
to (..., 3, H, W)), each byte as its difference from the one before (`numcodecs.delta`: along
a row, PNG's "Sub" predictor), then zstd. Neighbouring pixels are alike, so the differences are
small and zstd packs them about as tightly as PNG does.

A model takes frames as (..., 3, H, W), so the loader reads a clip's bytes by range from the
shard, decompresses them straight into the batch tensor and undoes the delta there: going
through zarr instead would decompress into a new buffer, transpose into zarr's output and
transpose again into the tensor.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numcodecs
import numpy as np
import zarr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec, TransposeCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from stages.errors import StoreError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # see feature_store/__init__.py
    from zarr.codecs.numcodecs import Delta

    _DELTA = Delta(dtype="u1")

# Level 1 decodes 2x and writes 4.5x faster than level 5 on face crops, for 4-5% more bytes (a
# few percent over PNG files of the same crops, where level 5 is 1% under): the loader's speed
# and the pipeline's writes were worth more than the bytes (BENCHMARKS.md).
IMAGE_COMPRESSOR = ZstdCodec(level=1)
# Flow and the track table: LZ4 on bit planes writes float16 flow at 1 GB/s and reads it at
# 2 GB/s, two and three times Blosc-zstd's speeds, for 10% more bytes.
FLOW_COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
TABLE_COMPRESSOR = FLOW_COMPRESSOR

_MISSING = 2**64 - 1  # a shard index's offset and length of a chunk never written


def image_filters(ndim: int) -> tuple:
    """Planar, then the byte delta: the channel axis moves before the image's rows."""
    order = tuple(range(ndim - 3)) + (ndim - 1, ndim - 3, ndim - 2)
    return (TransposeCodec(order=order), _DELTA)


@dataclass
class FramesReader:
    """A frames array opened for the fast read: where each clip chunk lies in its shard."""

    array: zarr.Array
    path: str  # the shard's file (local) or store key (other stores)
    chunk_frames: int
    offsets: np.ndarray  # uint64 (faces, chunks, 2): byte offset and length of each chunk
    signature: tuple  # the shard file's (inode, size, mtime) when opened, local stores only

    @classmethod
    def open(cls, array: zarr.Array) -> FramesReader | None:
        """None for an array stored otherwise (then zarr reads it)."""
        if not _is_standard_images(array):
            return None
        chunks = array.metadata.codecs[0].chunk_shape
        per_face = array.ndim == 5
        n_chunks = -(-array.shape[-4] // chunks[-4])
        faces = array.shape[0] if per_face else 1
        key = f"{array.path}/{array.metadata.encode_chunk_key((0,) * array.ndim)}"
        index_bytes = faces * n_chunks * 16 + 4  # (offset, length) uint64 a chunk, then a crc32c
        store = array.store_path.store
        if isinstance(store, LocalStore):
            path = str(store.root / key)
            try:
                with open(path, "rb") as file:
                    status = os.fstat(file.fileno())
                    file.seek(-index_bytes, os.SEEK_END)
                    index = file.read(index_bytes)
            except OSError as exc:
                raise StoreError(f"{array.store_path}: cannot read the shard of {array.path}: {exc}") from exc
            signature = (status.st_ino, status.st_size, status.st_mtime_ns)
        else:
            path, signature = key, ()
            index = sync(store.get(key, default_buffer_prototype(), SuffixByteRequest(index_bytes))).to_bytes()
        offsets = np.frombuffer(index[:-4], "<u8").reshape(faces, n_chunks, 2)
        return cls(array, path, chunks[-4], offsets, signature)

    def check_unchanged(self) -> None:
        """A local shard replaced since it was opened (the video was rewritten) is an error,
        not bytes read at stale offsets."""
        if self.signature:
            try:
                status = os.stat(self.path)
            except OSError:
                status = None
            if status is None or (status.st_ino, status.st_size, status.st_mtime_ns) != self.signature:
                raise StoreError(f"{self.path}: the video was rewritten after it was opened; open the store again")


def read_planar(windows: Sequence[tuple[FramesReader | zarr.Array, int, range]], out: np.ndarray) -> None:
    """Write the stored frames `rows` of face `face` of each (reader, face, rows) window into
    `out[k]`, a C-contiguous uint8 (len(windows), n, 3, H, W). A plain zarr array (stored some
    other way, or face-independent with face 0) is read through zarr."""
    pieces = []
    for k, (reader, face, rows) in enumerate(windows):
        if isinstance(reader, FramesReader):
            reader.check_unchanged()
            pieces += [(k, reader, face, chunk) for chunk in _chunks_of(reader.chunk_frames, rows)]
        else:
            selection = (face,) if reader.ndim == 5 else ()
            out[k] = np.moveaxis(reader[selection + (slice(rows.start, rows.stop, rows.step),)], -1, -3)
    blobs = _fetch([(reader, *reader.offsets[face, chunk]) for _, reader, face, chunk in pieces])
    for (k, reader, face, chunk), blob in zip(pieces, blobs):
        _decode_chunk(reader, chunk, blob, windows[k][2], out[k])


def _chunks_of(size: int, rows: range) -> range:
    return range(rows.start // size, (rows[-1] // size) + 1) if len(rows) else range(0)


def _fetch(ranges: list[tuple[FramesReader, int, int]]) -> list[bytes | None]:
    """Each chunk's bytes, None for one never written. A local shard is read here: through
    zarr's event loop a read hops threads twice, which costs 3x the read itself."""
    blobs: list[bytes | None] = [None] * len(ranges)
    remote = []
    for i, (reader, offset, length) in enumerate(ranges):
        if offset == _MISSING:
            continue
        if reader.signature:
            with open(reader.path, "rb") as file:
                blobs[i] = os.pread(file.fileno(), int(length), int(offset))
        else:
            remote.append(i)
    if remote:
        async def get_all():
            return await asyncio.gather(*(
                ranges[i][0].array.store_path.store.get(
                    ranges[i][0].path, default_buffer_prototype(), RangeByteRequest(int(ranges[i][1]), int(ranges[i][1] + ranges[i][2])))
                for i in remote))

        for i, blob in zip(remote, sync(get_all())):
            blobs[i] = blob.to_bytes() if blob is not None else None
    return blobs


def _decode_chunk(reader: FramesReader, chunk: int, blob: bytes | None, rows: range, out: np.ndarray) -> None:
    size = reader.chunk_frames
    first = chunk * size
    wanted = [i for i, row in enumerate(rows) if first <= row < first + size]
    if blob is None:  # a chunk never written holds the fill value
        out[wanted] = 0
        return
    if rows.step == 1 and len(wanted) == size:
        target = out[wanted[0] : wanted[0] + size]
        numcodecs.Zstd().decode(blob, out=target.reshape(-1))
        undo_delta(target.reshape(-1))
        return
    planes = np.frombuffer(numcodecs.Zstd().decode(blob), np.uint8).copy()
    undo_delta(planes)
    out[wanted] = planes.reshape(size, *out.shape[1:])[[rows[i] - first for i in wanted]]


def undo_delta(flat: np.ndarray) -> None:
    """Undo `numcodecs.delta` in place: a running sum modulo 256. torch's cumsum, where the
    loader has torch, runs 7x faster than numpy's on bytes."""
    try:
        import torch
    except ImportError:
        np.cumsum(flat, dtype=np.uint8, out=flat)
        return
    tensor = torch.from_numpy(flat)
    torch.cumsum(tensor, 0, dtype=torch.uint8, out=tensor)


def _is_standard_images(array: zarr.Array) -> bool:
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec) or array.fill_value != 0:
        return False
    sharding = codecs[0]
    inner = sharding.codecs
    chunks = sharding.chunk_shape
    return (len(inner) == 4 and inner[0] == image_filters(array.ndim)[0] and inner[1] == _DELTA
            and isinstance(inner[2], BytesCodec) and isinstance(inner[3], ZstdCodec)
            and tuple(chunks[-3:]) == tuple(array.shape[-3:]) and all(c == 1 for c in chunks[:-4])
            and all(s >= n for s, n in zip(array.metadata.chunk_grid.chunk_shape, array.shape))
            and sharding.index_location.value == "end")
