import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from feature_store import FeatureStore, frames
from feature_store.codecs import RowDelta

SHAPE = (37, 24, 20, 3)  # three chunks of 16, the last one partial


@pytest.fixture
def stored(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    store = FeatureStore(str(tmp_path / "s.zarr"))
    store.write_video("k", {"frames": pixels}, {}, chunk_frames=16)
    return pixels, store.video("k")["frames"]


def test_store_writes_frames_planar_and_zarr_reads_them_back(stored):
    pixels, array = stored
    assert frames.is_planar(array)
    assert np.array_equal(array[...], pixels)


@pytest.mark.parametrize("rows", [range(0, 16), range(3, 19), range(20, 36, 2), range(21, 37), range(0, 37, 3), range(36, 37)])
def test_planar_read_equals_zarr_read_transposed(stored, rows):
    pixels, array = stored
    out = np.full((2, len(rows), 3, *SHAPE[1:3]), 7, np.uint8)
    frames.read_planar([(array, rows), (array, rows)], out)
    expected = pixels[rows.start : rows.stop : rows.step].transpose(0, 3, 1, 2)
    assert np.array_equal(out[0], expected) and np.array_equal(out[1], expected)


def test_arrays_of_another_layout_are_read_through_zarr(stored, tmp_path):
    """Stores written before frames were planar keep working, mixed with planar ones in a batch."""
    pixels, planar = stored
    old = zarr.open_group(str(tmp_path / "old.zarr"), mode="w").create_array(
        "frames", shape=SHAPE, dtype=np.uint8, chunks=(16, *SHAPE[1:]), filters=[RowDelta(axis=1)], compressors=ZstdCodec(level=1))
    old[...] = pixels
    assert not frames.is_planar(old)
    rows = range(5, 21)
    out = np.empty((3, len(rows), 3, *SHAPE[1:3]), np.uint8)
    frames.read_planar([(planar, rows), (old, rows), (planar, rows)], out)
    expected = pixels[5:21].transpose(0, 3, 1, 2)
    assert all(np.array_equal(window, expected) for window in out)


def test_a_chunk_never_written_reads_as_zeros(tmp_path):
    array = zarr.open_group(str(tmp_path / "s.zarr"), mode="w").create_array(
        "frames", shape=SHAPE, dtype=np.uint8, chunks=(16, *SHAPE[1:]), filters=frames.FILTERS, compressors=frames.COMPRESSOR)
    array[:16] = 200
    out = np.empty((1, 8, 3, *SHAPE[1:3]), np.uint8)
    frames.read_planar([(array, range(12, 20))], out)
    assert (out[0, :4] == 200).all() and (out[0, 4:] == 0).all()
