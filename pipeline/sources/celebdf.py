"""`celebdf` (v2) and `celebdf-v1`: Celeb-DF, with its official test list.

The test list marks real with 1 and fake with 0, the reverse of ours. Only the test split is
official. By default, as published work on Celeb-DF trains, train and val hold every video
outside the list, val carved by identity (seeded): most identities of the list also appear
outside it, so train shares identities with test, and the inventory says how many videos do.
With `identity_disjoint`, a video showing any identity of a listed video is left out instead,
so that no test identity is ever trained on (few fakes remain).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.sources.base import Inventory, Layout, SourceOptions, VideoRecord, count_line, read_text, seeded_split, shown, video_id
from stages.errors import ConfigError

FOLDER_LABELS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}
TEST_LIST = "List_of_testing_videos.txt"
CELEB_REAL = re.compile(r"(id\d+)_(\d+)")
CELEB_FAKE = re.compile(r"(id\d+)_(id\d+)_(\d+)")
YOUTUBE_REAL = re.compile(r"\d+")


def inventory(root: Path, options: SourceOptions, dataset: str = "celebdf") -> Inventory:
    layout = Layout(root, dataset)
    files = [(folder, path) for folder in FOLDER_LABELS for path in layout.videos(root / folder, f"in {folder}/")]
    test_list = layout.file(root / TEST_LIST)
    layout.check()

    listed = _read_test_list(test_list, root)
    described, misnamed = {}, []
    for folder, path in files:
        extra = _describe(folder, path.stem)
        if extra is None:
            misnamed.append(video_id(path, root))
        else:
            described[video_id(path, root)] = (path, FOLDER_LABELS[folder], extra)
    test_identities = {identity for video in listed for identity in _describe(*video.split("/", 1))["identities"]}
    out, left_out, shared = [], [], []
    train_val_only = (options.split_ratios[0], options.split_ratios[1], 0)
    for vid, (path, label, extra) in described.items():
        shows_test_identity = bool(test_identities.intersection(extra["identities"]))
        if vid in listed:
            split = "test"
        elif shows_test_identity and options.identity_disjoint:
            left_out.append(vid)
            continue
        else:
            split = seeded_split(extra["group"], options.seed, train_val_only)
            if shows_test_identity:
                shared.append((split, vid))
        out.append(VideoRecord(vid, str(path), label, split, dataset, extra))

    warnings = []
    missing = sorted(set(listed) - described.keys())
    if missing:
        warnings.append(count_line(f"videos listed in {TEST_LIST} are missing", missing))
    if left_out:
        warnings.append(count_line("videos left out: they show an identity of a listed test video", left_out))
    notes = ()
    if shared:
        by_split = ", ".join(f"{split} {sum(s == split for s, _ in shared)}" for split in ("train", "val"))
        notes = (f"videos sharing an identity with test: {by_split}",)
        warnings.append(count_line("train or val videos show an identity of a listed test video "
                                   "(Celeb-DF's standard protocol; --identity-disjoint leaves them out)", [vid for _, vid in shared]))
    return Inventory(out, tuple(warnings), notes)


def _describe(folder: str, stem: str) -> dict | None:
    """Identities, group and original of a video from its name; None for a name Celeb-DF
    does not use. The group is the identity whose video it is (for a fake, the target)."""
    if folder == "Celeb-real" and (match := CELEB_REAL.fullmatch(stem)):
        return {"identities": [match[1]], "group": match[1]}
    if folder == "Celeb-synthesis" and (match := CELEB_FAKE.fullmatch(stem)):
        target, source, number = match.groups()
        return {"identities": [target, source], "group": target, "target": target, "source": source,
                "original": f"Celeb-real/{target}_{number}"}
    if folder == "YouTube-real" and YOUTUBE_REAL.fullmatch(stem):
        # Unnamed people, one a video: a YouTube video is its own group and shares no identity.
        return {"identities": [], "group": f"{folder}/{stem}"}
    return None


def _read_test_list(path: Path, root: Path) -> set[str]:
    """Video ids of the test list, each line `<1 real | 0 fake> <folder>/<file>` checked
    against its folder's label."""
    listed = set()
    for number, line in enumerate(read_text(path, root).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{shown(path, root)} line {number}"
        flag, _, relative = line.strip().partition(" ")
        folder, _, name = relative.strip().partition("/")
        if flag not in ("0", "1") or folder not in FOLDER_LABELS or not name or "/" in name.strip():
            raise ConfigError(f"{where}: {line.strip()!r} is not '<1 real | 0 fake> <folder>/<file>' with a folder of {', '.join(FOLDER_LABELS)}")
        if _describe(folder, Path(name).stem) is None:
            raise ConfigError(f"{where}: {name!r} is not named as Celeb-DF names the videos of {folder}/")
        if (flag == "0") != bool(FOLDER_LABELS[folder]):
            raise ConfigError(
                f"{where}: {flag} for {relative.strip()}, a {'fake' if FOLDER_LABELS[folder] else 'real'} video; "
                "this list must mark real with 1 and fake with 0"
            )
        listed.add(f"{folder}/{Path(name).stem}")
    return listed
