"""Store keys from video ids: readable, stable, and never a path outside the store."""

import hashlib
import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def video_key(video_id: str) -> str:
    """A readable slug of the id plus a digest of the whole id, so that ids differing only in
    characters the slug drops still get different keys. `a/../b c` -> `a_.._b_c-1f3a9c0d2e4b`."""
    if not isinstance(video_id, str) or not video_id:
        raise ValueError(f"video id must be a non-empty string, got {video_id!r}")
    ascii_id = unicodedata.normalize("NFKD", video_id).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("_", ascii_id.replace("/", "__")).strip("._-")[:80] or "video"
    digest = hashlib.sha256(video_id.encode("utf-8")).hexdigest()[:12]
    return f"{slug}-{digest}"
