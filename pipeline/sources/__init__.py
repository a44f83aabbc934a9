"""Dataset adapters: one function per dataset from a root folder to an inventory of video
records, and the checks every inventory gets."""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter, defaultdict
from pathlib import Path

from pipeline.sources import celebdf, deeperforensics, demo, dfdc, dfdcp, ffpp, folder
from pipeline.sources.base import Inventory, SourceOptions, VideoRecord, count_line
from stages.errors import ConfigError

SOURCES = {
    "celebdf": celebdf.inventory,
    "celebdf-v1": functools.partial(celebdf.inventory, dataset="celebdf-v1"),
    "deeperforensics": deeperforensics.inventory,
    "demo": demo.inventory,
    "dfdc": dfdc.inventory,
    "dfdcp": dfdcp.inventory,
    "ffpp": ffpp.inventory,
    "folder": folder.inventory,
}


def load_inventory(dataset: str, root: str | Path, options: SourceOptions = SourceOptions()) -> Inventory:
    """The records of a dataset root, checked (known dataset, existing root, unique ids, not
    empty), with warnings for leaks between splits and fakes whose original is missing."""
    if dataset not in SOURCES:
        raise ConfigError(f"--dataset {dataset}: unknown dataset; allowed: {', '.join(SOURCES)}")
    # Absolute, so that workers started elsewhere find the files.
    root = Path(root).absolute()
    if dataset != "demo" and not root.is_dir():
        raise ConfigError(f"--root {root}: no such directory")
    found = SOURCES[dataset](root, options)
    if not found.records:
        raise ConfigError(f"--root {root}: no videos found for dataset {dataset}" + "".join(f"; {w}" for w in found.warnings))
    repeated = [video_id for video_id, n in Counter(r.video_id for r in found.records).items() if n > 1]
    if repeated:
        raise ConfigError(f"--root {root}: video id {repeated[0]!r} names more than one file")
    return dataclasses.replace(found, warnings=found.warnings + tuple(leaks(found.records)))


def leaks(records: list[VideoRecord]) -> list[str]:
    """Warnings for a group (identity, source video) in more than one split, a fake in another
    split than its original, and a fake whose original is not among the records."""
    split_of = {record.video_id: record.split for record in records}
    splits_of_group = defaultdict(set)
    for record in records:
        if "group" in record.extra:
            splits_of_group[record.extra["group"]].add(record.split)
    fakes = [record for record in records if record.label == 1 and record.extra.get("original")]
    orphans = [f"{r.video_id} <- {r.extra['original']}" for r in fakes if r.extra["original"] not in split_of]
    strays = [r.video_id for r in fakes if split_of.get(r.extra["original"], r.split) != r.split]
    shared = [f"{group}: {', '.join(sorted(splits))}" for group, splits in splits_of_group.items() if len(splits) > 1]
    warnings = []
    if shared:
        warnings.append(count_line("identities or source videos in more than one split", shared))
    if strays:
        warnings.append(count_line("fakes in another split than their original", strays))
    if orphans:
        warnings.append(count_line("fakes whose original video is not among the videos found", orphans))
    return warnings
