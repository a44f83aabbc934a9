"""`ffpp`: FaceForensics++ at one compression, with its official pair splits.

A pair `[t, s]` of a split file puts reals `t` and `s` and, for every method, fakes `t_s` and
`s_t` in that split. DeepFakeDetection has no official split: its videos are split by the
actor whose video was manipulated, seeded.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.sources.base import (
    SPLITS, Inventory, Layout, SourceOptions, VideoRecord, count_line, read_json, seeded_split, shown, video_id,
)
from stages.errors import ConfigError

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
DEFAULT_METHODS = METHODS[:4]
DFD = "DeepFakeDetection"
# Folder names of each compression; some copies call the uncompressed videos c0.
COMPRESSION_FOLDERS = {"raw": ("raw", "c0"), "c0": ("raw", "c0"), "c23": ("c23",), "c40": ("c40",)}
# A video listed in two split files goes to the more held-out one (and the leak is reported).
HELD_OUT_FIRST = ("test", "val", "train")

YOUTUBE_REAL = re.compile(r"\d{3}")
YOUTUBE_FAKE = re.compile(r"(\d{3})_(\d{3})")
ACTOR_REAL = re.compile(r"(\d+)__(.+)")
ACTOR_FAKE = re.compile(r"(\d+)_(\d+)__(.+)__([A-Za-z0-9]{8})")


def inventory(root: Path, options: SourceOptions) -> Inventory:
    methods = _methods(options.methods)
    compression = compression_name(options.comp)
    youtube_folder = videos_folder(root / "original_sequences" / "youtube", options.comp)
    actors_folder = videos_folder(root / "original_sequences" / "actors", options.comp)
    layout = Layout(root, "ffpp")
    uses_youtube = any(method != DFD for method in methods)
    youtube = layout.videos(youtube_folder, "youtube reals") if uses_youtube else []
    actors = layout.videos(actors_folder, "actor reals") if DFD in methods else []
    fakes = {
        method: layout.videos(videos_folder(root / "manipulated_sequences" / method, options.comp), f"{method} fakes")
        for method in methods
    }
    split_files = _split_files(root, options.splits_dir, layout) if uses_youtube else {}
    layout.check()

    real_split, pair_split = _official_splits(split_files, root)
    candidates, misnamed = [], []  # candidates: (path, label, split or None, extra)
    for path in youtube:
        if YOUTUBE_REAL.fullmatch(path.stem):
            candidates.append((path, 0, real_split.get(path.stem), {"group": path.stem}))
        else:
            misnamed.append(path)
    for path in actors:
        if match := ACTOR_REAL.fullmatch(path.stem):
            group = f"actor {match[1]}"
            extra = {"group": group, "actor": match[1], "scene": match[2]}
            candidates.append((path, 0, seeded_split(group, options.seed, options.split_ratios), extra))
        else:
            misnamed.append(path)
    for method, paths in fakes.items():
        masks = _masks(root / "manipulated_sequences" / method / "masks" / "videos")
        for path in paths:
            match = (ACTOR_FAKE if method == DFD else YOUTUBE_FAKE).fullmatch(path.stem)
            if not match:
                misnamed.append(path)
                continue
            target, source = match[1], match[2]
            if method == DFD:
                group = f"actor {target}"
                original = actors_folder / f"{target}__{match[3]}.mp4"
                split = seeded_split(group, options.seed, options.split_ratios)
            else:
                group, original, split = target, youtube_folder / f"{target}.mp4", pair_split.get((target, source))
            extra = {"method": method, "target": target, "source": source, "original": video_id(original, root), "group": group}
            if path.stem in masks:
                extra["mask"] = str(masks[path.stem])
            candidates.append((path, 1, split, extra))

    out = [
        VideoRecord(video_id(path, root), str(path), label, split, "ffpp", {"compression": compression, **extra})
        for path, label, split, extra in candidates if split is not None
    ]
    left_out = [video_id(path, root) for path, _, split, _ in candidates if split is None]
    warnings = []
    if left_out:
        warnings.append(count_line("videos in no pair of the split files, left out", left_out))
    if misnamed:
        warnings.append(count_line("videos not named as FaceForensics++ names them, left out", [video_id(p, root) for p in misnamed]))
    return Inventory(out, tuple(warnings))


def compression_name(comp: str) -> str:
    if comp not in COMPRESSION_FOLDERS:
        raise ConfigError(f"--comp {comp}: unknown compression; allowed: {', '.join(COMPRESSION_FOLDERS)}")
    return "raw" if comp == "c0" else comp


def videos_folder(parent: Path, comp: str) -> Path:
    """`<parent>/<compression>/videos`, under whichever name this copy gives the compression."""
    names = COMPRESSION_FOLDERS[compression_name(comp)]
    found = next((name for name in names if (parent / name).is_dir()), names[0])
    return parent / found / "videos"


def _methods(requested: tuple[str, ...] | None) -> tuple[str, ...]:
    if requested is None:
        return DEFAULT_METHODS
    by_lower = {method.lower(): method for method in METHODS}
    unknown = [name for name in requested if name.lower() not in by_lower]
    if unknown:
        raise ConfigError(f"--methods {','.join(requested)}: unknown FaceForensics++ method {unknown[0]!r}; allowed: {', '.join(METHODS)}")
    return tuple(dict.fromkeys(by_lower[name.lower()] for name in requested))


def _split_files(root: Path, splits_dir: str | None, layout: Layout) -> dict[str, Path | None]:
    """train/val/test.json from --splits, else from `splits/` or the root itself."""
    if splits_dir:
        return {split: layout.file(Path(splits_dir) / f"{split}.json") for split in SPLITS}
    return {split: layout.file(root / "splits" / f"{split}.json", root / f"{split}.json") for split in SPLITS}


def _official_splits(split_files: dict[str, Path], root: Path) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """The split of each youtube real id and of each (target, source) fake."""
    real_split, pair_split = {}, {}
    for split in HELD_OUT_FIRST:
        if split not in split_files:
            continue
        expected = 'a JSON list of [target, source] pairs such as [["071", "054"], ...]'
        pairs = read_json(split_files[split], root, expected)
        if not isinstance(pairs, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, str) for i in pair) for pair in pairs
        ):
            raise ConfigError(f"{shown(split_files[split], root)}: not {expected}")
        for target, source in pairs:
            real_split.setdefault(target, split)
            real_split.setdefault(source, split)
            pair_split.setdefault((target, source), split)
            pair_split.setdefault((source, target), split)
    return real_split, pair_split


def _masks(folder: Path) -> dict[str, Path]:
    """Mask videos by stem; most copies have none."""
    return {path.stem: path for path in folder.glob("*.mp4")} if folder.is_dir() else {}
