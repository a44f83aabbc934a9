"""The dfprep error family. A video error's `reason` is what the manifest records."""


class DfprepError(Exception):
    reason = "failed"


class ConfigError(DfprepError):
    """A user's mistake: a bad option, path or configuration value. The CLI exits 2."""

    reason = "config"


class VideoError(DfprepError):
    """Something about one input video; recorded in the manifest, the run goes on."""


class Unreadable(VideoError):
    reason = "unreadable"


class NoVideoStream(VideoError):
    reason = "no video stream"


class Truncated(VideoError):
    reason = "truncated"


class TooLarge(VideoError):
    """Frames or a whole video beyond the decode limits, refused before decoding them."""

    reason = "too large"


class UnsupportedFormat(VideoError):
    """A container format outside the allow-list: other demuxers (playlists, concat lists)
    would open files the video names."""

    reason = "unsupported format"


class Corrupt(VideoError):
    """Decoding failed part-way through: damaged data inside the stream."""

    reason = "corrupt"


class NoFace(VideoError):
    reason = "no face"


class VideoTimeout(VideoError):
    reason = "timeout"


class StoreError(DfprepError):
    reason = "store"


class StoreFormatError(ConfigError):
    """A store of another format than this dfprep reads: the message says what to run."""

    reason = "store format"


class StoreLocked(DfprepError):
    reason = "locked"


class Diverged(DfprepError):
    """Training produced a loss that is not a number; the run stops, earlier checkpoints stay."""

    reason = "diverged"
