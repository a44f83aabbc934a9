"""Decoding under hostile or odd input (issue 19): frames and videos over the limits are
refused before they are decoded, only the container formats datasets use are opened, and a
header that over-counts its frames does not fail a video whose frames all decode."""

import os
import struct
import time
from pathlib import Path

import av
import numpy as np
import pytest
import videos

from stages.decode import DecodeConfig, SamplingConfig, decode_clips, probe
from stages.errors import ConfigError, TooLarge, UnsupportedFormat, VideoError


def _huge_png_video(path: Path, frames: int = 3, side: int = 8192) -> Path:
    """Lossless PNG frames of side x side, one bit a pixel: 25 KB of file for three frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=1)
        stream.width = stream.height = side
        stream.pix_fmt = "monob"
        frame = av.VideoFrame.from_ndarray(np.zeros((side, side), np.uint8), format="gray").reformat(format="monob")
        for _ in range(frames):
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path):
    path = _huge_png_video(tmp_path / "huge.mov")
    assert path.stat().st_size < 100_000
    started = time.perf_counter()
    with pytest.raises(TooLarge, match="decode.max_frame_pixels=16777216"):
        decode_clips(path, SamplingConfig(), DecodeConfig())
    # Decoding the three frames takes seconds and 600 MB; refusing them takes milliseconds.
    assert time.perf_counter() - started < 1.0


def test_the_limits_are_checked_on_the_frames_and_raised_with_set(tmp_path):
    path = videos.lossless(tmp_path / "small.mp4", videos.index_frames(10, 64, 96))
    sampling = SamplingConfig(clips=1, clip_length=4)
    with pytest.raises(TooLarge, match=r"96x64 frames, over decode.max_frame_pixels=6143"):
        decode_clips(path, sampling, DecodeConfig(max_frame_pixels=64 * 96 - 1))
    assert len(decode_clips(path, sampling, DecodeConfig(max_frame_pixels=64 * 96)).frame_index) == 4
    whole_video = 10 * 64 * 96 * 3
    with pytest.raises(TooLarge, match=rf"10 frames of 96x64 .* over decode.max_decoded_bytes={whole_video - 1}"):
        probe(path, DecodeConfig(max_decoded_bytes=whole_video - 1))
    assert probe(path, DecodeConfig(max_decoded_bytes=whole_video)).n_frames == 10
    from pipeline.profiles import get_profile

    raised = get_profile("default", ["decode.max_frame_pixels=67108864", "decode.max_decoded_bytes=137438953472"]).decode
    assert (raised.max_frame_pixels, raised.max_decoded_bytes) == (8192 * 8192, 128 * 2**30)


UNBOUNDED = [("sampling", "clips", 10**6), ("sampling", "clip_length", 10**9), ("sampling", "step", 10**9),
             ("decode", "max_side", 10**6), ("decode", "seek_min_gap", 10**9), ("decode", "threads", 10**4),
             ("decode", "max_frame_pixels", 2**40), ("decode", "max_decoded_bytes", 2**60),
             ("faces", "detect_width", 10**6), ("faces", "detect_interval", 10**9), ("faces", "smooth_sigma", 1e9),
             ("crops", "size", [10**5, 10**5]), ("crops", "margin", 1e6),
             ("flow", "levels", 10**4), ("flow", "winsize", 10**6), ("flow", "iterations", 10**9), ("flow", "poly_sigma", 1e9),
             ("flow", "flags", 4)]


@pytest.mark.parametrize("stage, field, value", UNBOUNDED, ids=[f"{stage}.{field}" for stage, field, _ in UNBOUNDED])
def test_a_stored_profile_cannot_ask_for_unbounded_work(stage, field, value):
    """A checkpoint carries the profile `predict` prepares videos with: every parameter that
    sizes the work has an upper bound, refused as a configuration error."""
    from pipeline.profiles import Profile, get_profile

    stored = get_profile("default").to_dict()
    if stage == "crops":
        stored["crops"][0][field] = value
    else:
        stored[stage][field] = value
    with pytest.raises(ConfigError, match=rf"\.{field}=.*(allowed|at most|each 8 to)"):
        Profile.from_dict(stored)


def test_the_frames_a_profile_keeps_are_bounded_in_all():
    with pytest.raises(ConfigError, match="clips x clip_length .* must be at most 1024 frames"):
        SamplingConfig(clips=6, clip_length=1000)


def _atime_is_kept(folder: Path) -> bool:
    """Whether reading a file here updates its access time (not on a noatime mount)."""
    probe_file = folder / "atime-probe"
    probe_file.write_bytes(b"x" * 4096)
    os.utime(probe_file, (1_000_000_000, probe_file.stat().st_mtime))
    probe_file.read_bytes()
    return probe_file.stat().st_atime != 1_000_000_000


def test_a_playlist_naming_a_file_outside_the_root_is_refused_without_reading_that_file(tmp_path):
    outside = videos.write(tmp_path / "outside" / "secret.mp4", videos.index_frames(10))
    if not _atime_is_kept(outside.parent):
        pytest.skip("reading a file does not update its access time on this filesystem (noatime)")
    old = 1_000_000_000
    os.utime(outside, (old, outside.stat().st_mtime))
    playlist = tmp_path / "root" / "list.m3u8"
    playlist.parent.mkdir()
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{outside}\n#EXT-X-ENDLIST\n")
    with pytest.raises(VideoError) as refused:
        decode_clips(playlist, SamplingConfig(clips=1, clip_length=4), DecodeConfig())
    assert outside.stat().st_atime == old, "FFmpeg read the file the playlist names"
    assert isinstance(refused.value, UnsupportedFormat) and "(mp4/mov, matroska/webm, avi, mpeg-ts, flv, asf)" in str(refused.value)


@pytest.mark.parametrize("name, codec", [("v.mp4", "libx264"), ("v.mkv", "libx264"), ("v.webm", "libvpx-vp9"), ("v.avi", "mpeg4"),
                                         ("v.ts", "libx264"), ("v.flv", "flv"), ("v.wmv", "wmv2")])
def test_the_containers_datasets_use_still_open(tmp_path, name, codec):
    path = videos.write(tmp_path / name, videos.index_frames(6), codec=codec)
    decoded = decode_clips(path, SamplingConfig(clips=1, clip_length=3), DecodeConfig())
    assert [videos.read_index(frame) for frame in decoded.frames_thw3] == decoded.frame_index.tolist() == [1, 2, 3]


def _over_declared_avi(path: Path, frames: int, declared: int) -> Path:
    """A valid AVI whose main and stream headers (avih dwTotalFrames, strh dwLength) list
    `declared` frames where its packets hold `frames`."""
    videos.write(path, videos.index_frames(frames), codec="mpeg4")
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    assert struct.unpack_from("<I", data, avih + 8 + 16) == (frames,) and data[strh + 8 : strh + 12] == b"vids"
    struct.pack_into("<I", data, avih + 8 + 16, declared)
    struct.pack_into("<I", data, strh + 8 + 32, declared)
    path.write_bytes(bytes(data))
    return path


def test_an_avi_whose_header_over_counts_its_frames_keeps_every_frame_it_has_with_a_warning(tmp_path):
    path = _over_declared_avi(tmp_path / "over.avi", frames=68, declared=444)
    assert probe(path).n_frames == 444
    decoded = decode_clips(path, SamplingConfig(clips=8, clip_length=16), DecodeConfig())
    # Four clips of 16 fit in the 68 frames the file holds, each frame the one its index names.
    assert len(decoded.frame_index) == 64 and decoded.frame_index.max() < 68
    assert [videos.read_index(frame) for frame in decoded.frames_thw3] == decoded.frame_index.tolist()
    assert decoded.info.n_frames == 68
    assert decoded.warnings == ("the container lists 444 frames, its stream holds 68",)
    # ...and the video's record keeps the warning.
    from feature_store import FeatureStore
    from pipeline.process import ALL_STAGES, WorkItem, process_video
    from pipeline.profiles import get_profile
    from pipeline.sources.base import VideoRecord

    profile = get_profile("gml", ["crop.mode=frame", "crop.size=32x32"])
    item = WorkItem(VideoRecord("over", str(path), 0, "train", "t"), "over", ALL_STAGES, "run")
    outcome = process_video(item, str(tmp_path / "s.zarr"), profile)
    assert outcome.row.entry.warnings == decoded.warnings
    assert FeatureStore(tmp_path / "s.zarr", mode="r").entry("over").warnings == decoded.warnings

