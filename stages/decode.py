"""Decode: choose a video's frames and read them with PyAV as RGB uint8, rotation applied."""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from stages.config import StageConfig, check
from stages.errors import Corrupt, NoVideoStream, TooLarge, Truncated, Unreadable, UnsupportedFormat

VERSION = 1
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
# The container formats datasets use, as FFmpeg names its demuxers. Any other demuxer may
# open files the video names (an HLS playlist, a concat list, an image sequence), outside
# the dataset's root; FFmpeg refuses those before reading past the file's first bytes.
ALLOWED_FORMATS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "flv", "asf")
ALLOWED_FORMATS_TEXT = "mp4/mov, matroska/webm, avi, mpeg-ts, flv, asf"
# Frames a profile may keep of one video, all clips together: the buffer of sampled frames
# is this many times a frame of up to max_side pixels.
MAX_SAMPLED_FRAMES = 1024


@dataclass(frozen=True)
class SamplingConfig(StageConfig):
    """Which frames a profile keeps: `clips` runs of `clip_length` frames, `step` apart."""

    clips: int = 8
    clip_length: int = 16
    # Source frames between a clip's frames; 0 spreads one clip evenly over the whole video.
    step: int = 1

    def __post_init__(self):
        check(1 <= self.clips <= 256, "sampling.clips", self.clips, "allowed: 1 to 256")
        check(1 <= self.clip_length <= MAX_SAMPLED_FRAMES, "sampling.clip_length", self.clip_length,
              f"allowed: 1 to {MAX_SAMPLED_FRAMES}")
        check(0 <= self.step <= 10_000, "sampling.step", self.step, "allowed: 0 to 10000 (0 spreads one clip over the video)")
        check(self.step > 0 or self.clips == 1, "sampling.clips", self.clips, "must be 1 when sampling.step is 0")
        check(self.clips * self.clip_length <= MAX_SAMPLED_FRAMES, "sampling.clips", self.clips,
              f"clips x clip_length ({self.clips} x {self.clip_length}) must be at most {MAX_SAMPLED_FRAMES} frames")


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
    # Videos refused at probe, before their frames are decoded: frames over this many pixels
    # (4096x4096 holds DCI 4K; three PNG frames of 8192x8192, a 650 KB file, took 8.4 s and
    # 512 MB to decode), and videos whose frames as RGB add up to more than this many bytes
    # (64 GiB: six minutes of 1080p at 30 fps, 90 s of 4K).
    max_frame_pixels: int = 4096 * 4096
    max_decoded_bytes: int = 64 * 2**30

    def __post_init__(self):
        check(16 <= self.max_side <= 8192, "decode.max_side", self.max_side, "allowed: 16 to 8192")
        check(self.seek in ("auto", "always", "never"), "decode.seek", self.seek, "allowed: auto, always, never")
        check(1 <= self.seek_min_gap <= 100_000, "decode.seek_min_gap", self.seek_min_gap, "allowed: 1 to 100000")
        check(0 <= self.threads <= 64, "decode.threads", self.threads, "allowed: 0 to 64 (0 lets FFmpeg choose)")
        check(1 <= self.max_frame_pixels <= 2**28, "decode.max_frame_pixels", self.max_frame_pixels,
              f"allowed: 1 to {2**28} (16384x16384)")
        check(1 <= self.max_decoded_bytes <= 2**40, "decode.max_decoded_bytes", self.max_decoded_bytes,
              f"allowed: 1 to {2**40} (1 TiB)")


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
    info: VideoInfo  # n_frames: the frames the stream holds, whatever its header said
    warnings: tuple[str, ...] = ()  # what was odd about the file, though it decoded


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


def probe(path: str | Path, config: DecodeConfig = DecodeConfig()) -> VideoInfo:
    """The video's size, rate and frame count, read from its header and first frame. A video
    beyond `config`'s limits is refused here, before its frames are decoded."""
    with _open(path, config) as container:
        stream = _video_stream(container, config)
        n_frames = stream.frames or _count_packets(container, stream)
        # The header's size, where FFmpeg could read one within the pixel limit (0 otherwise).
        _check_size(stream.codec_context.width, stream.codec_context.height, n_frames, config)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise _decoding_error(exc, -1, config) from exc
        if first is None:
            raise Unreadable("no decodable frame")
        _check_size(first.width, first.height, n_frames, config)
        rotation = int(round(first.rotation)) % 360
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        start_pts = first.pts if first.pts is not None else (stream.start_time or 0)
        return VideoInfo(n_frames, _fps(stream), width, height, rotation, stream.codec_context.name, start_pts)


def decode_clips(path: str | Path, sampling: SamplingConfig, config: DecodeConfig) -> DecodedFrames:
    """Read the frames `sampling` asks for. A stream that ends cleanly before the frame count
    its container lists (AVI headers often over-count) is sampled from the frames it holds,
    with a warning; one cut inside a packet is truncated, one that fails to decode corrupt."""
    info = probe(path, config)
    n_frames, warnings = info.n_frames, ()
    while True:
        clips = sample_clips(n_frames, sampling)
        wanted = np.concatenate(clips)
        read = _read(path, wanted, config, info)
        if len(read.frames) < len(wanted) and config.seek != "never":
            # A seek can land past a wanted frame in odd files; plain decoding is always exact.
            read = _read(path, wanted, dataclasses.replace(config, seek="never"), info)
        if len(read.frames) == len(wanted):
            break
        decoded = read.last_index + 1
        if read.cut or decoded == 0 or n_frames != info.n_frames:
            where = "; the stream ends inside a packet" if read.cut else ""
            raise Truncated(f"decoded {decoded} of {info.n_frames} frames the container lists{where}")
        n_frames = decoded
        warnings = (f"the container lists {info.n_frames} frames, its stream holds {decoded}",)
    clip_index = np.concatenate([np.full(len(c), i, np.int32) for i, c in enumerate(clips)])
    return DecodedFrames(
        frames_thw3=read.frames,
        frame_index=wanted,
        clip_index=clip_index,
        timestamps_s=read.timestamps_s,
        frame_scale=_frame_scale(info, config),
        info=dataclasses.replace(info, n_frames=n_frames),
        warnings=warnings,
    )


def read_frames(path: str | Path, frame_index: np.ndarray, config: DecodeConfig) -> np.ndarray:
    """Frames at the given sorted, unique source indices: uint8 (T, H, W, 3)."""
    info = probe(path, config)
    read = _read(path, np.asarray(frame_index, np.int64), config, info)
    if len(read.frames) < len(frame_index):
        raise Truncated(f"asked for frame {int(frame_index[-1])}, the video ends at {read.last_index}")
    return read.frames


@dataclass(frozen=True)
class _Read:
    """What one pass over a video found: the wanted frames it reached, their times, the last
    frame position decoded, and whether the stream ended inside a packet."""

    frames: np.ndarray
    timestamps_s: np.ndarray
    last_index: int
    cut: bool = False


def _read(path, wanted: np.ndarray, config: DecodeConfig, info: VideoInfo) -> _Read:
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
    cut = [False]
    with _open(path, config) as container:
        stream = _video_stream(container, config)
        stream.thread_count = config.threads
        time_base, start = stream.time_base, info.start_pts
        decoder = _decode(container, stream, cut)
        after_seek = False
        for target in wanted:
            if _should_seek(config, target - position):
                container.seek(start + int(target / info.fps / time_base), stream=stream, backward=True)
                decoder = _decode(container, stream, cut)
                after_seek = True
            while position < target:
                try:
                    frame = next(decoder, None)
                except av.error.FFmpegError as exc:
                    raise _decoding_error(exc, position, config) from exc
                if frame is None:
                    return _Read(_kept(frames, len(timestamps)), _timestamps(timestamps, wanted[: len(timestamps)], info.fps),
                                 position, cut[0])
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
    return _Read(_kept(frames, len(timestamps)), _timestamps(timestamps, wanted[: len(timestamps)], info.fps), position, cut[0])


def _decode(container, stream, cut: list[bool]):
    """The stream's frames, as `container.decode` gives them, noting in `cut[0]` a packet
    that ends short of its size: the file stops inside it."""
    for packet in container.demux(stream):
        if packet.is_corrupt:
            cut[0] = True
        yield from packet.decode()


def _read_skipping(path, wanted: np.ndarray, config: DecodeConfig, info: VideoInfo) -> _Read | None:
    """One pass over the video that leaves undecoded the frames no other frame refers to and
    none of `wanted` is (about half of an x264 stream's frames: its B-frames). Frames are
    placed by their timestamps' rank, taken from the packets beforehand, which is exact for
    constant and variable frame rates alike. None where that cannot be done exactly (timestamps
    missing or repeated, as in AVI with packed B-frames; a decoding error; a wanted frame
    missing): `_read` then decodes frame by frame, and reports what went wrong."""
    with _open(path, config) as container:
        stream = _video_stream(container, config)
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
        with _open(path, config) as container:
            stream = _video_stream(container, config)
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
    return _Read(frames, _timestamps(timestamps, wanted, info.fps), int(wanted[-1]))


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


def _open(path, config: DecodeConfig):
    path = Path(path)
    # A FIFO or a device is opened like any file: it ends with a status, or hits the time limit.
    if not path.exists():
        raise Unreadable(f"broken link to {os.readlink(path)}" if path.is_symlink() else "no such file")
    try:
        # An absolute path is never read as a protocol ("concat:...", "subfile:..."), and
        # the whitelists keep FFmpeg to this one local file in a dataset's formats. Streams'
        # first frames over the pixel limit are not decoded to learn their size.
        return av.open(str(path.absolute()), container_options={"format_whitelist": ",".join(ALLOWED_FORMATS), "protocol_whitelist": "file"},
                       options={"max_pixels": _ffmpeg_max_pixels(config)})
    except av.error.ArgumentError as exc:
        raise UnsupportedFormat(f"not a container format datasets use ({ALLOWED_FORMATS_TEXT})") from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise Unreadable("empty file" if path.stat().st_size == 0 else _message(exc)) from exc


def _message(exc: Exception) -> str:
    """FFmpeg's words for a failure, without the error number and path PyAV adds."""
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container, config: DecodeConfig) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise NoVideoStream(f"streams found: {', '.join(kinds)}")
    stream = container.streams.video[0]
    # The decoder refuses any frame far over the limit, however late in the stream it comes.
    stream.codec_context.options = {"max_pixels": _ffmpeg_max_pixels(config)}
    return stream


def _ffmpeg_max_pixels(config: DecodeConfig) -> str:
    # FFmpeg counts a frame's rows padded for alignment (a 96x64 H.264 frame fails its limit
    # of 6144): twice the limit leaves room, and `_check_size` on the frame's size is exact.
    return str(2 * config.max_frame_pixels)


def _check_size(width: int, height: int, n_frames: int, config: DecodeConfig) -> None:
    if width * height > config.max_frame_pixels:
        raise TooLarge(f"{width}x{height} frames, over decode.max_frame_pixels={config.max_frame_pixels}")
    if n_frames * width * height * 3 > config.max_decoded_bytes:
        raise TooLarge(f"{n_frames} frames of {width}x{height} are {n_frames * width * height * 3 / 2**30:.1f} GiB as RGB, "
                       f"over decode.max_decoded_bytes={config.max_decoded_bytes}")


def _decoding_error(exc: av.error.FFmpegError, position: int, config: DecodeConfig) -> Exception:
    """The error a decoder's failure after frame `position` (-1: none yet) is recorded as.
    Decoders refuse a frame over the pixel limit with EINVAL, damaged data with EINVALIDDATA."""
    if isinstance(exc, av.error.ArgumentError):
        return TooLarge(f"a frame over decode.max_frame_pixels={config.max_frame_pixels} pixels")
    if position < 0:
        return Unreadable(f"cannot decode the first frame: {_message(exc)}")
    return Corrupt(f"decoding failed after frame {position}: {_message(exc)}")


def _count_packets(container, stream) -> int:
    # Containers without a frame count (WebM, some MKV): one packet a frame, read without decoding.
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 25.0
