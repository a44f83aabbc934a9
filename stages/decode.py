"""Decode: choose a video's frames and read them with PyAV as RGB uint8, rotation applied."""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from stages.config import StageConfig, check
from stages.errors import Corrupt, NoVideoStream, Truncated, Unreadable

VERSION = 1
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


@dataclass(frozen=True)
class SamplingConfig(StageConfig):
    """Which frames a profile keeps: `clips` runs of `clip_length` frames, `step` apart."""

    clips: int = 8
    clip_length: int = 16
    # Source frames between a clip's frames; 0 spreads one clip evenly over the whole video.
    step: int = 1

    def __post_init__(self):
        check(self.clips >= 1, "sampling.clips", self.clips, "must be >= 1")
        check(self.clip_length >= 1, "sampling.clip_length", self.clip_length, "must be >= 1")
        check(self.step >= 0, "sampling.step", self.step, "must be >= 0 (0 spreads one clip over the video)")
        check(self.step > 0 or self.clips == 1, "sampling.clips", self.clips, "must be 1 when sampling.step is 0")


@dataclass(frozen=True)
class DecodeConfig(StageConfig):
    # Longer side of the frames handed to later stages; bigger videos are shrunk while
    # converting, which bounds a worker's memory on 4K input without costing face pixels.
    max_side: int = 1920
    seek: str = "auto"  # auto | always | never
    # Seek only across gaps longer than this many frames: x264's default keyframe interval is
    # 250, and decoding forward is cheaper than a seek that lands on the same keyframe.
    seek_min_gap: int = 250
    threads: int = 1

    def __post_init__(self):
        check(self.max_side >= 16, "decode.max_side", self.max_side, "must be >= 16")
        check(self.seek in ("auto", "always", "never"), "decode.seek", self.seek, "allowed: auto, always, never")
        check(self.seek_min_gap >= 1, "decode.seek_min_gap", self.seek_min_gap, "must be >= 1")
        check(self.threads >= 0, "decode.threads", self.threads, "must be >= 0 (0 lets FFmpeg choose)")


@dataclass(frozen=True)
class VideoInfo:
    n_frames: int
    fps: float
    width: int  # as displayed, after rotation
    height: int
    rotation: int  # degrees counter-clockwise applied to the stored pixels for display
    codec: str
    start_pts: int  # timestamp of frame 0, in the stream's time base


@dataclass(frozen=True)
class DecodedFrames:
    """Sampled frames: `frames_thw3` uint8 RGB (T, H, W, 3); `frame_index` int64 (T,) source
    frame numbers; `clip_index` int32 (T,); `timestamps_s` float64 (T,); `frame_scale` decoded
    pixels per source pixel."""

    frames_thw3: np.ndarray
    frame_index: np.ndarray
    clip_index: np.ndarray
    timestamps_s: np.ndarray
    frame_scale: float
    info: VideoInfo


def sample_clips(n_frames: int, config: SamplingConfig) -> list[np.ndarray]:
    """Source frame indices of each clip. Clips never overlap; a short video gets fewer clips,
    and one shorter than a clip gets a single clip of what it has."""
    if n_frames <= 0:
        return []
    if config.step == 0:
        count = min(config.clip_length, n_frames)
        return [np.unique(np.round(np.linspace(0, n_frames - 1, count)).astype(np.int64))]
    span = (config.clip_length - 1) * config.step + 1
    if n_frames < span:
        return [np.arange(0, n_frames, config.step, dtype=np.int64)]
    n_clips = min(config.clips, n_frames // span)
    # Each clip sits in the middle of its equal share of the video.
    segment = n_frames / n_clips
    starts = [int((i + 0.5) * segment - span / 2) for i in range(n_clips)]
    return [np.arange(s, s + span, config.step, dtype=np.int64) for s in starts]


def probe(path: str | Path) -> VideoInfo:
    with _open(path) as container:
        stream = _video_stream(container)
        n_frames = stream.frames or _count_packets(container, stream)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise Unreadable(f"cannot decode the first frame: {_message(exc)}") from exc
        if first is None:
            raise Unreadable("no decodable frame")
        rotation = int(round(first.rotation)) % 360
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        start_pts = first.pts if first.pts is not None else (stream.start_time or 0)
        return VideoInfo(n_frames, _fps(stream), width, height, rotation, stream.codec_context.name, start_pts)


def decode_clips(path: str | Path, sampling: SamplingConfig, config: DecodeConfig) -> DecodedFrames:
    """Read the frames `sampling` asks for. A video holding clearly fewer frames than its
    container lists is truncated."""
    info = probe(path)
    n_frames = info.n_frames
    while True:
        clips = sample_clips(n_frames, sampling)
        wanted = np.concatenate(clips)
        frames, timestamps, last_index = _read(path, wanted, config, info)
        if len(frames) < len(wanted) and config.seek != "never":
            # A seek can land past a wanted frame in odd files; plain decoding is always exact.
            exact = DecodeConfig(config.max_side, "never", config.seek_min_gap, config.threads)
            frames, timestamps, last_index = _read(path, wanted, exact, info)
        if len(frames) == len(wanted):
            break
        decoded = last_index + 1
        # Frame counts from headers can be a frame or two high; more than that is damage.
        if decoded == 0 or decoded < 0.98 * n_frames - 2 or n_frames != info.n_frames:
            raise Truncated(f"decoded {decoded} of {info.n_frames} frames the container lists")
        n_frames = decoded
    clip_index = np.concatenate([np.full(len(c), i, np.int32) for i, c in enumerate(clips)])
    return DecodedFrames(
        frames_thw3=frames,
        frame_index=wanted,
        clip_index=clip_index,
        timestamps_s=timestamps,
        frame_scale=_frame_scale(info, config),
        info=info,
    )


def read_frames(path: str | Path, frame_index: np.ndarray, config: DecodeConfig) -> np.ndarray:
    """Frames at the given sorted, unique source indices: uint8 (T, H, W, 3)."""
    info = probe(path)
    frames, _, last_index = _read(path, np.asarray(frame_index, np.int64), config, info)
    if len(frames) < len(frame_index):
        raise Truncated(f"asked for frame {int(frame_index[-1])}, the video ends at {last_index}")
    return frames


def _read(path, wanted: np.ndarray, config: DecodeConfig, info: VideoInfo):
    gaps = np.diff(wanted, prepend=-1)
    if not any(_should_seek(config, gap) for gap in gaps):
        skipping = _read_skipping(path, wanted, config, info)
        if skipping is not None:
            return skipping
    scale = _frame_scale(info, config)
    k_rot90 = info.rotation // 90
    frames: np.ndarray | None = None  # allocated at the first kept frame, filled in place
    timestamps: list = []
    position = -1
    with _open(path) as container:
        stream = _video_stream(container)
        stream.thread_count = config.threads
        time_base, start = stream.time_base, info.start_pts
        decoder = container.decode(stream)
        after_seek = False
        for target in wanted:
            if _should_seek(config, target - position):
                container.seek(start + int(target / info.fps / time_base), stream=stream, backward=True)
                decoder = container.decode(stream)
                after_seek = True
            while position < target:
                try:
                    frame = next(decoder, None)
                except av.error.FFmpegError as exc:
                    if position < 0:
                        raise Unreadable(f"decoding failed: {_message(exc)}") from exc
                    raise Corrupt(f"decoding failed after frame {position}: {_message(exc)}") from exc
                if frame is None:
                    return _kept(frames, len(timestamps)), timestamps, position
                if after_seek and frame.pts is not None:
                    # Only the keyframe a seek lands on is placed by its timestamp; counting
                    # from there stays exact where timestamps are not (AVI with B-frames).
                    position = int(round(float((frame.pts - start) * time_base) * info.fps))
                else:
                    position += 1
                after_seek = False
            if position == target:
                rgb = _to_rgb(frame, scale, k_rot90, frames[len(timestamps)] if frames is not None else None)
                if frames is None:
                    frames = _frames_buffer((len(wanted), *rgb.shape))
                    frames[0] = rgb
                timestamps.append(frame.time)
    return _kept(frames, len(timestamps)), _timestamps(timestamps, wanted[: len(timestamps)], info.fps), position


def _read_skipping(path, wanted: np.ndarray, config: DecodeConfig, info: VideoInfo):
    """One pass over the video that leaves undecoded the frames no other frame refers to and
    none of `wanted` is (about half of an x264 stream's frames: its B-frames). Frames are
    placed by their timestamps' rank, taken from the packets beforehand, which is exact for
    constant and variable frame rates alike. None where that cannot be done exactly (timestamps
    missing or repeated, as in AVI with packed B-frames; a decoding error; a wanted frame
    missing): `_read` then decodes frame by frame, and reports what went wrong."""
    with _open(path) as container:
        stream = _video_stream(container)
        stamps = [packet.pts for packet in container.demux(stream) if packet.size]
    if not stamps or None in stamps or len(set(stamps)) != len(stamps):
        return None
    number_of = {pts: i for i, pts in enumerate(sorted(stamps))}
    slot_of = {int(index): slot for slot, index in enumerate(wanted)}
    scale, k_rot90 = _frame_scale(info, config), info.rotation // 90
    frames: np.ndarray | None = None
    timestamps: list = [None] * len(wanted)
    filled = np.zeros(len(wanted), bool)
    try:
        with _open(path) as container:
            stream = _video_stream(container)
            stream.thread_count = config.threads
            codec = stream.codec_context
            for packet in container.demux(stream):
                if packet.pts is not None:
                    needed = packet.is_keyframe or number_of.get(packet.pts) in slot_of
                    codec.skip_frame = "DEFAULT" if needed else "NONREF"
                for frame in packet.decode():
                    slot = slot_of.get(number_of.get(frame.pts, -1))
                    # A slot filled twice (a decoder repeating a timestamp) would leave another
                    # unfilled behind a full count.
                    if slot is None or filled[slot]:
                        continue
                    rgb = _to_rgb(frame, scale, k_rot90, frames[slot] if frames is not None else None)
                    if frames is None:
                        frames = _frames_buffer((len(wanted), *rgb.shape))
                        frames[slot] = rgb
                    timestamps[slot], filled[slot] = frame.time, True
                if filled.all():
                    break
    except av.error.FFmpegError:
        return None
    if not filled.all():
        return None
    return frames, _timestamps(timestamps, wanted, info.fps), int(wanted[-1])


def _frames_buffer(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint8 array on the kernel's small pages. numpy asks for huge pages on
    every array over 4 MB; a fresh 354 MB of them (128 frames of 720p) can stall 0.3-1 s on
    memory compaction where small pages take 0.15 s to fill, and a video larger than the last
    one gets fresh ones."""
    size = math.prod(shape)
    memory = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(memory, np.uint8, size).reshape(shape)


def _kept(frames: np.ndarray | None, count: int) -> np.ndarray:
    return frames[:count] if frames is not None else np.zeros((0, 0, 0, 3), np.uint8)


def _timestamps(times: list, frame_index: np.ndarray, fps: float) -> np.ndarray:
    times_s = np.asarray([np.nan if t is None else t for t in times], np.float64)
    # Some containers (AVI with packed B-frames) carry timestamps out of order.
    if len(times_s) and not (np.all(np.isfinite(times_s)) and np.all(np.diff(times_s) > 0)):
        return frame_index / fps
    return times_s


def thumbnail(frame_hw3: np.ndarray, width: int = 320) -> tuple[np.ndarray, float]:
    """A small copy of a frame for contact sheets, and its scale from frame pixels."""
    scale = min(1.0, width / frame_hw3.shape[1])
    return cv2.resize(frame_hw3, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def _should_seek(config: DecodeConfig, gap: int) -> bool:
    if config.seek == "never":
        return False
    if config.seek == "always":
        return gap > 1
    return gap > config.seek_min_gap


def _to_rgb(frame: av.VideoFrame, scale: float, k_rot90: int, out: np.ndarray | None = None) -> np.ndarray:
    """The frame as RGB uint8 (H, W, 3), written into `out` when given."""
    if scale < 1.0:
        width, height = round(frame.width * scale), round(frame.height * scale)
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
    elif frame.format.name == "yuv420p" and frame.color_range != _FULL_RANGE and frame.width % 2 == 0 and frame.height % 2 == 0:
        # OpenCV converts the common limited-range 4:2:0 case four times faster than swscale.
        if out is not None and not k_rot90:
            return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420, dst=out)
        rgb = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    else:
        rgb = frame.to_ndarray(format="rgb24")
    if k_rot90:
        rgb = np.rot90(rgb, k_rot90)
    if out is None:
        return np.ascontiguousarray(rgb)
    out[...] = rgb
    return out


def _frame_scale(info: VideoInfo, config: DecodeConfig) -> float:
    return min(1.0, config.max_side / max(info.width, info.height))


def _open(path):
    path = Path(path)
    # A FIFO or a device is opened like any file: it ends with a status, or hits the time limit.
    if not path.exists():
        raise Unreadable(f"broken link to {os.readlink(path)}" if path.is_symlink() else "no such file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise Unreadable("empty file" if path.stat().st_size == 0 else _message(exc)) from exc


def _message(exc: Exception) -> str:
    """FFmpeg's words for a failure, without the error number and path PyAV adds."""
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise NoVideoStream(f"streams found: {', '.join(kinds)}")
    return container.streams.video[0]


def _count_packets(container, stream) -> int:
    # Containers without a frame count (WebM, some MKV): one packet a frame, read without decoding.
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 25.0
