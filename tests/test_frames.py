import numpy as np
import pytest
import zarr

from feature_store import FeatureStore, frames, schema
from feature_store.frames import FramesReader
from test_store import entry

SHAPE = (2, 37, 24, 20, 3)  # two faces, three clip chunks of 16 frames, the last one partial


@pytest.fixture
def stored(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    store = FeatureStore(str(tmp_path / "s.zarr"))
    store.write_video("k", entry(), {schema.FRAMES: schema.images_array(schema.FRAMES, pixels, per_face=True)}, chunk_frames=16)
    return pixels, store.open_video("k")[schema.FRAMES]


def test_frames_are_stored_with_standard_codecs_that_zarr_reads_back(stored):
    pixels, array = stored
    assert FramesReader.open(array) is not None
    names = [codec["name"] for codec in array.metadata.to_dict()["codecs"][0]["configuration"]["codecs"]]
    assert names == ["transpose", "numcodecs.delta", "bytes", "zstd"]
    assert np.array_equal(array[...], pixels)


@pytest.mark.parametrize("rows", [range(0, 16), range(3, 19), range(20, 36, 2), range(21, 37), range(0, 37, 3), range(36, 37)])
def test_the_fast_read_equals_zarr_read_transposed(stored, rows):
    pixels, array = stored
    reader = FramesReader.open(array)
    out = np.full((3, len(rows), 3, *SHAPE[2:4]), 7, np.uint8)
    frames.read_planar([(reader, 1, rows), (reader, 0, rows), (reader, 1, rows)], out)
    for window, face in zip(out, (1, 0, 1)):
        np.testing.assert_array_equal(window, pixels[face, rows.start : rows.stop : rows.step].transpose(0, 3, 1, 2))


def test_arrays_of_another_layout_are_read_through_zarr(stored, tmp_path):
    """An array stored some other way (no shard, other codecs), mixed with the fast ones in a batch."""
    pixels, sharded = stored
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_array(
        "frames", shape=SHAPE, dtype=np.uint8, chunks=(1, 16, *SHAPE[2:]))
    plain[...] = pixels
    assert FramesReader.open(plain) is None
    rows = range(5, 21)
    out = np.empty((3, len(rows), 3, *SHAPE[2:4]), np.uint8)
    frames.read_planar([(FramesReader.open(sharded), 1, rows), (plain, 1, rows), (FramesReader.open(sharded), 1, rows)], out)
    expected = pixels[1, 5:21].transpose(0, 3, 1, 2)
    assert all(np.array_equal(window, expected) for window in out)


def test_a_chunk_never_written_reads_as_zeros_as_in_zarr(tmp_path):
    array = zarr.open_group(str(tmp_path / "s.zarr"), mode="w").create_array(
        "frames", shape=SHAPE[1:], dtype=np.uint8, chunks=(16, *SHAPE[2:]), shards=(48, *SHAPE[2:]),
        filters=frames.image_filters(4), compressors=frames.IMAGE_COMPRESSOR)
    array[:16] = 200
    out = np.empty((1, 8, 3, *SHAPE[2:4]), np.uint8)
    frames.read_planar([(FramesReader.open(array), 0, range(12, 20))], out)
    assert (out[0, :4] == 200).all() and (out[0, 4:] == 0).all()
    assert np.array_equal(out[0], array[12:20].transpose(0, 3, 1, 2))


def test_the_delta_undone_by_the_loader_is_numcodecs_delta():
    import numcodecs

    values = np.random.default_rng(3).integers(0, 256, 100_003, dtype=np.uint8)
    coded = numcodecs.Delta(dtype="u1").encode(values)
    frames.undo_delta(coded)
    assert np.array_equal(coded, values)
