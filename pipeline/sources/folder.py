"""`folder`: any folder of videos. `real/` and `fake/` (any depth, any video extension) label
what they hold, split by group (the file stem), seeded; a root with neither holds videos to
screen: every video under it, label unknown (-1), split test. A CSV of
`path,label[,split][,group]` (paths relative to the root, label 0, 1 or empty for unknown)
says instead; its rows without a split are split by group, seeded (unlabeled ones go to
test), and a CSV naming train but no val has val carved from train by group."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import posixpath
import stat
from pathlib import Path

from pipeline.sources.base import (
    SPLITS, UNLABELED, VIDEO_EXTENSIONS, Inventory, SourceOptions, VideoRecord, count_line, seeded_split, video_files, video_id,
)
from stages.errors import ConfigError

COLUMNS = ("path", "label", "split", "group")
LABELS = {"0": 0, "1": 1, "": UNLABELED}


def inventory(root: Path, options: SourceOptions) -> Inventory:
    if options.labels_csv:
        return _from_csv(root, Path(options.labels_csv), options)
    present = [(label, name) for label, name in ((0, "real"), (1, "fake")) if (root / name).is_dir()]
    if not present:
        return Inventory([VideoRecord(video_id(path, root), str(path), UNLABELED, "test", "folder", {"group": path.stem})
                          for path in video_files(root)])
    out = [
        VideoRecord(video_id(path, root), str(path), label, seeded_split(path.stem, options.seed, options.split_ratios), "folder", {"group": path.stem})
        for label, name in present
        for path in video_files(root / name)
    ]
    warnings = () if len(present) == 2 else (f"no {('real', 'fake')[1 - present[0][0]]}/ folder: every video is {present[0][1]}",)
    return Inventory(out, warnings)


def _from_csv(root: Path, csv_path: Path, options: SourceOptions) -> Inventory:
    try:
        # utf-8-sig: Excel starts the CSVs it saves with a byte-order mark.
        with open(csv_path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"--labels {csv_path}: cannot read it ({exc})") from exc
    unknown = [column for column in header if column not in COLUMNS]
    if "path" not in header or "label" not in header or unknown:
        raise ConfigError(f"--labels {csv_path}: expected a header path,label[,split][,group]; found {','.join(header) or 'an empty file'}")
    within_root = _WithinRoot(root)
    out, missing, first_line = [], [], {}
    for line, row in enumerate(rows, start=2):
        where = f"--labels {csv_path} line {line}"
        label, split, group = ((row.get(column) or "").strip() for column in ("label", "split", "group"))
        if label not in LABELS:
            raise ConfigError(f"{where}: label {label!r}; allowed: 0 (real), 1 (fake), or empty for unknown")
        if split and split not in SPLITS:
            raise ConfigError(f"{where}: split {split!r}; allowed: {', '.join(SPLITS)}, or empty for a seeded split")
        written = (row["path"] or "").strip()
        # One file is one video however the row spells it: `x/../a.mp4` is `a.mp4`.
        relative = posixpath.normpath(written) if written else ""
        if not written or posixpath.isabs(relative) or relative == ".." or relative.startswith("../"):
            raise ConfigError(f"{where}: path {written!r} is empty or outside --root {root}")
        stem, extension = posixpath.splitext(relative)
        if extension.lower() not in VIDEO_EXTENSIONS:
            raise ConfigError(f"{where}: path {written!r} is not a video file; allowed extensions: {', '.join(sorted(VIDEO_EXTENSIONS))}")
        if stem in first_line:
            raise ConfigError(f"{where}: {stem} is listed again (first on line {first_line[stem]})")
        first_line[stem] = line
        path = f"{root}/{relative}"
        found = within_root.file(relative)
        if found is None:
            missing.append(relative)
            continue
        if not found:
            raise ConfigError(f"{where}: path {written!r} leads outside --root {root} (through a link)")
        group = group or posixpath.basename(stem)
        if not split:
            split = "test" if LABELS[label] == UNLABELED else seeded_split(group, options.seed, options.split_ratios)
        out.append(VideoRecord(stem, path, LABELS[label], split, "folder", {"group": group}))
    warnings = [count_line(f"videos listed in {csv_path.name} are missing", missing)] if missing else []
    given = {row_split for row_split in ((row.get("split") or "").strip() for row in rows) if row_split}
    if "train" in given and "val" not in given:
        out, carved, groups = _carve_val(out, options)
        warnings.append(f"{csv_path.name} names no val split: val is {carved} of the {groups} train groups "
                        f"(share {options.val_share:g}, seed {options.seed}; --val-share sets it)")
    return Inventory(out, tuple(warnings))


def _carve_val(records: list[VideoRecord], options: SourceOptions) -> tuple[list[VideoRecord], int, int]:
    """Records with val taken from train, and how many of how many train groups went: the
    share of groups with the lowest seeded hash (at least one, never all), whole groups."""
    groups = sorted({r.extra["group"] for r in records if r.split == "train"},
                    key=lambda group: hashlib.sha256(f"{options.seed}:val:{group}".encode()).digest())
    count = min(len(groups) - 1, max(1, math.ceil(options.val_share * len(groups)))) if len(groups) > 1 else 0
    val = set(groups[:count])
    carved = [VideoRecord(r.video_id, r.path, r.label, "val", r.dataset, r.extra) if r.split == "train" and r.extra["group"] in val else r
              for r in records]
    return carved, count, len(groups)


class _WithinRoot:
    """Whether a CSV's files lie within the root once links are followed, with the real path
    of each folder looked up once: resolving every row's path costs a system call a path
    component, the bulk of a long CSV's time."""

    def __init__(self, root: Path):
        self.root = os.path.realpath(root)
        self.folders: dict[str, bool] = {}

    def file(self, relative: str) -> bool | None:
        """None when there is no file there, False when it or its folder leads outside."""
        path = os.path.join(self.root, relative)
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                mode = os.stat(path).st_mode
                if not self._inside(os.path.realpath(path)):
                    return False
        except OSError:
            return None
        if stat.S_ISDIR(mode):
            return None
        folder = posixpath.dirname(relative)
        if folder not in self.folders:
            self.folders[folder] = self._inside(os.path.realpath(os.path.join(self.root, folder)))
        return self.folders[folder]

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)
