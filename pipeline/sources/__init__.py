"""Dataset adapters: one function per dataset from a root folder to video records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pipeline.sources import demo, folder
from pipeline.sources.base import SourceOptions, VideoRecord
from stages.errors import ConfigError

SOURCES = {
    "demo": demo.records,
    "folder": folder.records,
}


def load_records(dataset: str, root: str | Path, options: SourceOptions = SourceOptions()) -> list[VideoRecord]:
    """Records of a dataset root, checked: known dataset, existing root, unique ids, not empty."""
    if dataset not in SOURCES:
        raise ConfigError(f"--dataset {dataset}: unknown dataset; allowed: {', '.join(SOURCES)}")
    root = Path(root)
    if dataset != "demo" and not root.is_dir():
        raise ConfigError(f"--root {root}: no such directory")
    found = SOURCES[dataset](root, options)
    if not found:
        raise ConfigError(f"--root {root}: no videos found for dataset {dataset}")
    repeated = [video_id for video_id, n in Counter(r.video_id for r in found).items() if n > 1]
    if repeated:
        raise ConfigError(f"--root {root}: video id {repeated[0]!r} names more than one file")
    return found
