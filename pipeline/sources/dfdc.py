"""`dfdc`: the full DFDC training parts and, when present, the public test set.

Each `dfdc_train_part_N/` holds a `metadata.json` with every video's label and, for a fake,
its original. The parts have no official train/val split; folds by part are the custom, so a
family (an original and every fake made from it) goes to the split of its original's part,
seeded. A folder under the root holding `labels.csv` (`filename,label`, 1 fake) is the public
test set; without one, the parts are split into train, val and test.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from pipeline.sources.base import (
    Inventory, Layout, SourceOptions, VideoRecord, brief, count_line, read_json, read_text, seeded_split, shown, video_id,
)
from stages.errors import ConfigError

PART = re.compile(r"dfdc_train_part_(\d+)")
LABELS = {"REAL": 0, "FAKE": 1}


def inventory(root: Path, options: SourceOptions) -> Inventory:
    layout = Layout(root, "dfdc")
    parts = _part_folders(root)
    test_folders = [path.parent for pattern in ("*/labels.csv", "*/*/labels.csv") for path in sorted(root.glob(pattern))]
    if not parts and not test_folders:
        layout.lacks("dfdc_train_part_*/ folders, and no test folder with labels.csv")
    on_disk: dict[str, tuple[int, Path]] = {}  # file name -> (part, path)
    listings = []
    for part, folder in parts:
        listing = layout.file(folder / "metadata.json")
        on_disk.update((path.name, (part, path)) for path in layout.videos(folder, "in training parts"))
        listings.append(listing)
    tests = [(folder, layout.videos(folder, "in the test set")) for folder in test_folders]
    layout.check()

    # With an official test set, the parts give train and val only.
    ratios = (options.split_ratios[0], options.split_ratios[1], 0) if tests else options.split_ratios
    out, missing = [], []
    entries = {name: info for listing in listings for name, info in _read_metadata(listing, root).items()}
    for name, info in sorted(entries.items()):
        if name not in on_disk:
            missing.append(name)
            continue
        part, path = on_disk[name]
        label = LABELS[info["label"]]
        original = info.get("original") if label else None
        family_part = on_disk[original][0] if original in on_disk else part
        extra = {"part": part, "group": f"dfdc_train_part_{family_part}"}
        if original:
            # An original not on disk keeps its bare name, which no record has: reported as missing.
            extra["original"] = video_id(on_disk[original][1], root) if original in on_disk else Path(original).stem
        out.append(VideoRecord(video_id(path, root), str(path), label, seeded_split(extra["group"], options.seed, ratios), "dfdc", extra))
    unlisted = [video_id(path, root) for name, (_, path) in on_disk.items() if name not in entries]
    for folder, paths in tests:
        labels = _read_test_labels(folder / "labels.csv", root)
        for path in paths:
            if path.name in labels:
                vid = video_id(path, root)
                out.append(VideoRecord(vid, str(path), labels.pop(path.name), "test", "dfdc", {"group": vid}))
            else:
                unlisted.append(video_id(path, root))
        missing += [shown(folder / name, root) for name in labels]

    warnings = []
    if missing:
        warnings.append(count_line("videos listed in metadata.json or labels.csv are missing", missing))
    if unlisted:
        warnings.append(count_line("videos not listed in their metadata.json or labels.csv, left out", unlisted))
    return Inventory(out, tuple(warnings))


def _part_folders(root: Path) -> list[tuple[int, Path]]:
    """(number, folder) of each training part; a copy unzipped nested
    (`dfdc_train_part_00/dfdc_train_part_0/`) has its files in the inner folder."""
    found = []
    for outer in sorted(path for path in root.iterdir() if path.is_dir() and PART.fullmatch(path.name)):
        inner = [path for path in outer.iterdir() if path.is_dir() and PART.fullmatch(path.name)]
        folder = inner[0] if len(inner) == 1 and not (outer / "metadata.json").is_file() else outer
        found.append((int(PART.fullmatch(folder.name)[1]), folder))
    return sorted(found)


def _read_metadata(path: Path, root: Path) -> dict[str, dict]:
    expected = 'a JSON object of file name -> {"label": "REAL" or "FAKE", "original": file name (fakes)}'
    entries = read_json(path, root, expected)
    if not isinstance(entries, dict):
        raise ConfigError(f"{shown(path, root)}: not {expected}")
    for name, info in entries.items():
        where = f"{shown(path, root)}: entry {name!r}"
        if not _is_file_name(name):
            raise ConfigError(f"{where}: not a video file name")
        if not isinstance(info, dict):
            raise ConfigError(f"{where}: {brief(info)} is not an object {{\"label\": ..., \"original\": ...}}")
        label = info.get("label")
        if not isinstance(label, str) or label not in LABELS:
            raise ConfigError(f"{where}: label {brief(label)}; allowed: REAL, FAKE")
        original = info.get("original")
        if original is not None and not _is_file_name(original):
            raise ConfigError(f"{where}: original {brief(original)} is not a video file name")
    return entries


def _is_file_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name



def _read_test_labels(path: Path, root: Path) -> dict[str, int]:
    """File name -> label of the test set's `labels.csv` (`filename,label`, 1 fake)."""
    reader = csv.DictReader(io.StringIO(read_text(path, root)))
    if not {"filename", "label"} <= set(reader.fieldnames or ()):
        raise ConfigError(f"{shown(path, root)}: expected a header filename,label; found {','.join(reader.fieldnames or ())}")
    labels = {}
    for row in reader:
        where = f"{shown(path, root)} line {reader.line_num}"
        name, label = ((row[column] or "").strip() for column in ("filename", "label"))
        if not _is_file_name(name):
            raise ConfigError(f"{where}: filename {name!r} is not a video file name")
        if label not in ("0", "1"):
            raise ConfigError(f"{where}: label {label!r}; allowed: 0 (real), 1 (fake)")
        labels[name] = int(label)
    return labels
