"""What every source produces, and the helpers they share."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoRecord:
    """One input video. `label` 0 real, 1 fake; `extra` holds what the dataset knows besides
    (method, compression, identities, original video...)."""

    video_id: str
    path: str
    label: int
    split: str
    dataset: str
    extra: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class SourceOptions:
    """Dataset options from the command line; each source reads the ones it knows."""

    seed: int = 0
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    labels_csv: str | None = None


@dataclass(frozen=True)
class Fingerprint:
    size: int
    mtime_ns: int
    sha256: str


def fingerprint(path: str | Path) -> Fingerprint:
    stat = os.stat(path)
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return Fingerprint(stat.st_size, stat.st_mtime_ns, digest)


def seeded_split(group: str, seed: int, ratios: tuple[float, float, float]) -> str:
    """A split from a hash of the group: stable when other videos come or go, and every video
    of a group (an identity, a source video and its fakes) lands in the same split."""
    unit = int.from_bytes(hashlib.sha256(f"{seed}:{group}".encode()).digest()[:8], "big") / 2**64
    total = sum(ratios)
    if unit < ratios[0] / total:
        return "train"
    return "val" if unit < (ratios[0] + ratios[1]) / total else "test"


def video_files(folder: Path) -> list[Path]:
    """Video files under a folder, at any depth, in a stable order. Anything with a video
    extension that is not a folder counts (a dangling link, a FIFO), so it gets a status
    instead of vanishing from the counts."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and not p.is_dir())
