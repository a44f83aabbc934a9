"""What every source produces, and the helpers they share."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from feature_store.schema import LABEL_NAMES, UNLABELED
from pipeline.terminal import printable
from stages.config import check
from stages.errors import ConfigError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoRecord:
    """One input video. `label` 0 real, 1 fake, -1 unknown (UNLABELED); `extra` holds what the
    dataset knows besides (method, compression, identities, original video...). Two keys have a fixed meaning:
    `group`, the unit a split keeps together (an identity, a source video and its fakes), and,
    for a fake, `original`, the video id of the real video it was made from."""

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
    comp: str = "c23"
    methods: tuple[str, ...] | None = None  # None: the dataset's default set
    splits_dir: str | None = None
    ffpp_root: str | None = None
    identity_disjoint: bool = False  # celebdf: leave out every video showing an identity of the test list
    val_share: float = 0.1  # folder: share of train groups made val when a labels CSV names no val

    def __post_init__(self):
        ratios = self.split_ratios
        check(
            len(ratios) == 3 and min(ratios) >= 0 and ratios[0] > 0, "--split-ratios", ratios,
            "three ratios train, val, test, each >= 0, train > 0",
        )
        check(0 < self.val_share < 1, "--val-share", self.val_share, "must be > 0 and < 1")


@dataclass(frozen=True)
class Inventory:
    """What a source found under its root: the records, one line for each thing a user
    should know before a run (files left out, listed files missing, leaks between splits), and
    lines the table ends with (counts a dataset's protocol makes worth seeing)."""

    records: list[VideoRecord]
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def table(self) -> str:
        """Records by split and label (an unlabeled column when there are any), and fakes by
        method, as aligned text."""
        counts = Counter((record.split, record.label) for record in self.records)
        splits = list(SPLITS) + sorted({split for split, _ in counts} - set(SPLITS))
        datasets = ", ".join(sorted({printable(record.dataset) for record in self.records}))
        labels = [0, 1] + ([UNLABELED] if any(label == UNLABELED for _, label in counts) else [])
        widths = [max(8, len(LABEL_NAMES[label]) + 1) for label in labels]
        rows = [(split, [counts[split, label] for label in labels]) for split in splits]
        rows.append(("all", [sum(column) for column in zip(*(numbers for _, numbers in rows))]))
        lines = [f"{datasets}: {len(self.records)} videos",
                 f"{'split':<8}" + "".join(f"{LABEL_NAMES[label]:>{width}}" for label, width in zip(labels, widths)) + f"{'total':>8}"]
        lines += [f"{printable(split):<8}" + "".join(f"{n:>{width}}" for n, width in zip(numbers, widths)) + f"{sum(numbers):>8}" for split, numbers in rows]
        methods = Counter(record.extra["method"] for record in self.records if record.label == 1 and record.extra.get("method"))
        if methods:
            lines.append("fakes by method: " + ", ".join(f"{printable(method)} {n}" for method, n in sorted(methods.items())))
        return "\n".join(lines + list(self.notes))


class Layout:
    """What a root was expected to hold. Sources ask for each folder and file; whatever is
    missing is raised at the end as one error that also counts the videos found."""

    def __init__(self, root: Path, dataset: str):
        self.root, self.dataset = root, dataset
        self.missing: list[str] = []
        self.found: Counter = Counter()

    def videos(self, folder: Path, kind: str) -> list[Path]:
        """Video files under a folder (any depth), counted as `kind`; the folder is noted as
        missing when it is not there."""
        if not folder.is_dir():
            self.lacks(shown(folder, self.root) + "/")
            return []
        files = video_files(folder)
        self.found[kind] += len(files)
        return files

    def file(self, *candidates: Path) -> Path | None:
        """The first candidate that exists; the first is noted as missing when none does."""
        for path in candidates:
            if path.is_file():
                return path
        others = ", ".join(shown(path, self.root) for path in candidates[1:])
        self.lacks(shown(candidates[0], self.root) + (f" (or {others})" if others else ""))
        return None

    def lacks(self, what: str) -> None:
        self.missing.append(what)

    def check(self) -> None:
        if self.missing:
            found = ", ".join(f"{n} {kind}" for kind, n in self.found.items()) or "no videos"
            raise ConfigError(f"--root {self.root}: not a complete {self.dataset} layout: missing {', '.join(self.missing)}; found {found}")


def seeded_split(group: str, seed: int, ratios: tuple[float, float, float]) -> str:
    """A split from a hash of the group: stable when other videos come or go, and every video
    of a group (an identity, a source video and its fakes) lands in the same split. A ratio of
    0 leaves its split empty (sources with an official test set pass (train, val, 0))."""
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


def video_id(path: Path, root: Path) -> str:
    """The id of a video: its path relative to its root, without extension."""
    return path.relative_to(root).with_suffix("").as_posix()


def read_text(path: Path, root: Path) -> str:
    """A label or split file's text (UTF-8, with or without a byte-order mark); one that
    cannot be read is a user error naming it."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown(path, root)}: cannot read it ({exc})") from exc


def read_json(path: Path, root: Path, expected: str):
    """A label or split file's JSON; a file that does not parse is a user error naming it."""
    try:
        return json.loads(read_text(path, root))
    except ValueError as exc:
        raise ConfigError(f"{shown(path, root)}: not {expected} ({exc})") from exc
    except RecursionError as exc:
        raise ConfigError(f"{shown(path, root)}: not {expected} (nested too deeply to read)") from exc


def shown(path: Path, root: Path) -> str:
    """A path as messages show it: relative to the dataset root when under it."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def brief(value) -> str:
    """A value read from a label file as a message shows it, however large."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def count_line(what: str, names: list[str]) -> str:
    """`N <what> (e.g. a, b, c)`: one warning line, however many names."""
    examples = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} {what} (e.g. {examples})"
