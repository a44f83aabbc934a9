"""`folder`: a root with `real/` and `fake/` (any depth, any video extension), or a CSV of
`path,label[,split][,group]` with paths relative to the root. Videos without a split are split
by group (default: the file stem), seeded."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.sources.base import SPLITS, Inventory, SourceOptions, VideoRecord, count_line, seeded_split, video_files, video_id
from stages.errors import ConfigError

COLUMNS = ("path", "label", "split", "group")


def inventory(root: Path, options: SourceOptions) -> Inventory:
    if options.labels_csv:
        return _from_csv(root, Path(options.labels_csv), options)
    missing = [name for name in ("real", "fake") if not (root / name).is_dir()]
    if missing:
        raise ConfigError(f"--root {root}: expected folders real/ and fake/ (or --labels FILE.csv), missing {', '.join(m + '/' for m in missing)}")
    out = [
        VideoRecord(video_id(path, root), str(path), label, seeded_split(path.stem, options.seed, options.split_ratios), "folder", {"group": path.stem})
        for label, name in ((0, "real"), (1, "fake"))
        for path in video_files(root / name)
    ]
    return Inventory(out)


def _from_csv(root: Path, csv_path: Path, options: SourceOptions) -> Inventory:
    try:
        with open(csv_path, newline="") as file:
            reader = csv.DictReader(file)
            header, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"--labels {csv_path}: cannot read it ({exc})") from exc
    unknown = [column for column in header if column not in COLUMNS]
    if "path" not in header or "label" not in header or unknown:
        raise ConfigError(f"--labels {csv_path}: expected a header path,label[,split][,group]; found {','.join(header) or 'an empty file'}")
    out, missing, first_line = [], [], {}
    for line, row in enumerate(rows, start=2):
        where = f"--labels {csv_path} line {line}"
        label, split, group = ((row.get(column) or "").strip() for column in ("label", "split", "group"))
        if label not in ("0", "1"):
            raise ConfigError(f"{where}: label {label!r}; allowed: 0 (real), 1 (fake)")
        if split and split not in SPLITS:
            raise ConfigError(f"{where}: split {split!r}; allowed: {', '.join(SPLITS)}, or empty for a seeded split")
        relative = (row["path"] or "").strip()
        path = root / relative
        if not relative or not path.resolve().is_relative_to(root.resolve()):
            raise ConfigError(f"{where}: path {relative!r} is empty or outside --root {root}")
        vid = video_id(path, root)
        if vid in first_line:
            raise ConfigError(f"{where}: {vid} is listed again (first on line {first_line[vid]})")
        first_line[vid] = line
        if not path.is_file():
            missing.append(relative)
            continue
        group = group or path.stem
        extra = {"group": group}
        out.append(VideoRecord(vid, str(path), int(label), split or seeded_split(group, options.seed, options.split_ratios), "folder", extra))
    return Inventory(out, (count_line(f"videos listed in {csv_path.name} are missing", missing),) if missing else ())
