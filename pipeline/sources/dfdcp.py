"""`dfdcp`: the DFDC preview, with its official train/test sets.

`dataset.json` maps each relative path to its label and set. There is no validation set: one
is carved from train by identity (the folder under `original_videos/` or `method_*/`), seeded.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from pipeline.sources.base import Inventory, Layout, SourceOptions, VideoRecord, brief, count_line, read_json, seeded_split, shown, video_id
from stages.errors import ConfigError

FOLDERS = ("original_videos", "method_A", "method_B")
LABELS = {"real": 0, "fake": 1}
SETS = ("train", "test")


def inventory(root: Path, options: SourceOptions) -> Inventory:
    layout = Layout(root, "dfdcp")
    on_disk = {video_id(path, root): path for folder in FOLDERS for path in layout.videos(root / folder, f"in {folder}/")}
    listing = layout.file(root / "dataset.json")
    layout.check()

    expected = 'a JSON object of relative path -> {"label": "real" or "fake", "set": "train" or "test"}'
    entries = read_json(listing, root, expected)
    if not isinstance(entries, dict):
        raise ConfigError(f"{shown(listing, root)}: not {expected}")
    out, missing, first = [], [], {}
    train_val_only = (options.split_ratios[0], options.split_ratios[1], 0)
    for relative, info in sorted(entries.items()):
        where = f"{shown(listing, root)}: entry {relative!r}"
        parts = _parts(relative)
        if parts is None:
            raise ConfigError(f"{where}: not a path <{' | '.join(FOLDERS)}>/<identity>/.../<file>.mp4 inside the root")
        if not isinstance(info, dict) or not isinstance(info.get("label"), str) or info["label"] not in LABELS or info.get("set") not in SETS:
            raise ConfigError(f"{where}: {brief(info)} is not {{\"label\": \"real\" or \"fake\", \"set\": \"train\" or \"test\"}}")
        vid = posixpath.splitext("/".join(parts))[0]
        if vid in first:
            raise ConfigError(f"{where}: the same video as entry {first[vid]!r}")
        first[vid] = relative
        path = on_disk.pop(vid, None)
        if path is None:
            missing.append(relative)
            continue
        folder, identity = parts[0], parts[1]
        split = "test" if info["set"] == "test" else seeded_split(identity, options.seed, train_val_only)
        extra = {"identity": identity, "group": identity}
        if folder != "original_videos":
            extra["method"] = folder
        out.append(VideoRecord(vid, str(path), LABELS[info["label"]], split, "dfdcp", extra))

    warnings = []
    if missing:
        warnings.append(count_line("videos listed in dataset.json are missing", missing))
    if on_disk:
        warnings.append(count_line("videos not listed in dataset.json, left out", list(on_disk)))
    return Inventory(out, tuple(warnings))


def _parts(relative: str) -> list[str] | None:
    """The normalised parts of a listed path, or None for one that is not a video under a
    folder of the dataset (`""`, `"."`, `"../x.mp4"`, `"method_A/x.mp4"`)."""
    normal = posixpath.normpath(relative) if relative else ""
    parts = normal.split("/")
    if len(parts) < 3 or parts[0] not in FOLDERS or ".." in parts or not posixpath.splitext(normal)[1]:
        return None
    return parts
