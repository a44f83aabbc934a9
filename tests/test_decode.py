from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import videos
from stages import decode
from stages.decode import DecodeConfig, SamplingConfig, decode_clips, probe, read_frames, sample_clips
from stages.errors import ConfigError, NoVideoStream, Truncated, Unreadable


def test_clips_are_evenly_spread_and_never_overlap():
    clips = sample_clips(300, SamplingConfig(clips=8, clip_length=16, step=1))
    assert len(clips) == 8
    assert all(np.array_equal(np.diff(c), np.ones(15)) for c in clips)
    starts = [c[0] for c in clips]
    assert all(b - a >= 16 for a, b in zip(starts, starts[1:]))
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1
    assert clips[0][0] >= 0 and clips[-1][-1] <= 299


def test_short_videos_get_fewer_clips_and_spread_sampling_covers_the_video():
    assert len(sample_clips(40, SamplingConfig(clips=8, clip_length=16))) == 2
    assert [len(c) for c in sample_clips(10, SamplingConfig(clips=8, clip_length=16))] == [10]
    spread = sample_clips(300, SamplingConfig(clips=1, clip_length=16, step=0))[0]
    assert len(spread) == 16 and spread[0] == 0 and spread[-1] == 299
    every_second = sample_clips(100, SamplingConfig(clips=4, clip_length=8, step=2))
    assert all(np.array_equal(np.diff(c), np.full(7, 2)) for c in every_second)


def test_sampled_frames_carry_their_source_index(tmp_path):
    path = videos.lossless(tmp_path / "index.mp4", videos.index_frames(120))
    decoded = decode_clips(path, SamplingConfig(clips=3, clip_length=8), DecodeConfig())
    assert decoded.frames_thw3.dtype == np.uint8 and decoded.frames_thw3.shape == (24, 96, 176, 3)
    assert [videos.read_index(f) for f in decoded.frames_thw3] == decoded.frame_index.tolist()
    assert decoded.clip_index.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    np.testing.assert_allclose(decoded.timestamps_s, decoded.frame_index / 25, atol=1e-6)


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="page flags are read from /proc/self/smaps (Linux only)")
def test_sampled_frames_sit_on_small_pages(tmp_path):
    # Fresh huge pages for a video's frames stall on memory compaction (see decode._frames_buffer).
    path = videos.lossless(tmp_path / "index.mp4", videos.index_frames(40))
    for config in (DecodeConfig(), DecodeConfig(seek="always")):  # both ways of reading frames
        frames = decode_clips(path, SamplingConfig(clips=2, clip_length=8), config).frames_thw3
        assert "nh" in _vm_flags(frames.ctypes.data)


def _vm_flags(address: int) -> list[str]:
    """The kernel's flags for the mapping that holds `address`."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        first = line.split()[0]
        if "-" in first and ":" not in first:
            start, end = (int(v, 16) for v in first.split("-"))
            inside = start <= address < end
        elif inside and first == "VmFlags:":
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


def test_seeking_returns_exactly_the_frames_of_a_full_decode(tmp_path):
    # Keyframes every 12 frames, so seeks land on a keyframe and decode forward.
    path = videos.write(tmp_path / "gop.mp4", videos.index_frames(200), options={"g": "12", "crf": "30", "bf": "2"})
    wanted = np.array([3, 17, 18, 60, 61, 62, 111, 150, 199])
    sequential = read_frames(path, wanted, DecodeConfig(seek="never"))
    seeking = read_frames(path, wanted, DecodeConfig(seek="always"))
    assert np.array_equal(sequential, seeking)
    assert [videos.read_index(f) for f in seeking] == wanted.tolist()


def _variable_rate(path, frames):
    """H.264 with B-frames whose frames are 30 to 70 ms apart."""
    import av

    gaps_ms = np.random.default_rng(0).integers(30, 70, len(frames))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"bf": "3", "crf": "30"}
        for frame, pts in zip(frames, np.cumsum(gaps_ms) - gaps_ms[0]):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = int(pts), Fraction(1, 1000)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("rate", ["constant", "variable"])
def test_skipping_unreferenced_frames_returns_exactly_the_frames_asked_for(tmp_path, rate):
    """The one-pass decode that leaves B-frames nobody wants undecoded places every frame
    where counting frame by frame does, at constant and variable frame rates."""
    frames = videos.index_frames(150)
    if rate == "constant":
        path = videos.write(tmp_path / "b.mp4", frames, options={"bf": "3", "crf": "30"})
    else:
        path = _variable_rate(tmp_path / "vfr.mp4", frames)
    info = probe(path)
    for wanted in (np.round(np.linspace(0, 149, 32)).astype(np.int64), np.arange(40, 56), np.array([0, 1, 2, 149])):
        skipped = decode._read_skipping(path, wanted, DecodeConfig(), info)
        assert skipped is not None, "the one-pass decode declined a plain H.264 file"
        assert [videos.read_index(f) for f in skipped.frames] == wanted.tolist()
        assert np.array_equal(skipped.frames, read_frames(path, wanted, DecodeConfig(seek="always")))


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied_counter_clockwise(tmp_path, degrees):
    frames = np.zeros((6, 64, 96, 3), np.uint8)
    frames[:, :16, :16] = 255  # a white marker in the stored top-left corner
    path = tmp_path / f"rot{degrees}.mp4"
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(degrees)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    info = probe(path)
    assert info.rotation == degrees
    decoded = read_frames(path, np.arange(3), DecodeConfig())
    # Turning the picture counter-clockwise carries the top-left corner to the bottom-left
    # (90), bottom-right (180) or top-right (270).
    expected_shape = (64, 96) if degrees == 180 else (96, 64)
    assert decoded.shape[1:3] == expected_shape and (info.height, info.width) == expected_shape
    h, w = expected_shape
    corner = {90: (h - 8, 8), 180: (h - 8, w - 8), 270: (8, w - 8)}[degrees]
    assert decoded[0][corner].mean() > 200
    assert decoded[0][8, 8].mean() < 50


def test_large_frames_are_shrunk_to_max_side(tmp_path):
    path = videos.write(tmp_path / "big.mp4", videos.index_frames(10, 192, 352))
    decoded = decode_clips(path, SamplingConfig(clips=1, clip_length=4), DecodeConfig(max_side=176))
    assert decoded.frames_thw3.shape[1:3] == (96, 176)
    assert decoded.frame_scale == 0.5


def test_broken_inputs_raise_the_error_their_status_records(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(Unreadable):
        probe(empty)
    with pytest.raises(Unreadable):
        probe(text)
    with pytest.raises(Unreadable):
        probe(tmp_path / "missing.mp4")
    import av

    audio = tmp_path / "audio.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(NoVideoStream):
        probe(audio)


def test_a_video_cut_short_is_truncated(tmp_path):
    # AVI keeps its frame count in the header, so a cut file promises frames it lacks.
    path = videos.write(tmp_path / "cut.avi", videos.index_frames(120), codec="mpeg4")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert probe(path).n_frames == 120
    with pytest.raises(Truncated, match="of 120 frames the container lists; the stream ends inside a packet"):
        decode_clips(path, SamplingConfig(clips=8, clip_length=16), DecodeConfig())


def test_bad_parameters_name_the_field_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"decode.seek='sometimes': allowed: auto, always, never"):
        DecodeConfig(seek="sometimes")
    with pytest.raises(ConfigError, match="sampling.clip_length"):
        SamplingConfig(clip_length=0)


def test_fast_colour_conversion_matches_ffmpeg_within_rounding(tmp_path):
    import av

    from stages.decode import _to_rgb

    frames = (videos.texture(96, 128, seed=1)).astype(np.uint8)[None].repeat(3, axis=0)
    path = videos.write(tmp_path / "colour.mp4", frames)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert frame.format.name == "yuv420p"
        difference = np.abs(_to_rgb(frame, 1.0, 0).astype(int) - frame.to_ndarray(format="rgb24").astype(int))
    assert difference.max() <= 3 and difference.mean() < 1.5
