"""`deeperforensics`: DeeperForensics-1.0 fakes with their official split lists, and their reals.

The list files name each fake `<target>_<source>.mp4`, once for all variants. The official
reals are the FaceForensics++ youtube videos of the targets (taken from `--ffpp-root`, at
`--comp`), each in the split of its fakes; not `source_videos/`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.sources.base import SPLITS, Inventory, Layout, SourceOptions, VideoRecord, count_line, read_text, shown, video_id
from pipeline.sources.ffpp import HELD_OUT_FIRST, compression_name, videos_folder
from stages.errors import ConfigError


def inventory(root: Path, options: SourceOptions) -> Inventory:
    if not options.ffpp_root:
        raise ConfigError("--ffpp-root: required for deeperforensics, whose real videos are FaceForensics++'s youtube originals")
    ffpp_root = Path(options.ffpp_root).absolute()
    if not ffpp_root.is_dir():
        raise ConfigError(f"--ffpp-root {ffpp_root}: no such directory")
    layout = Layout(root, "deeperforensics")
    variants_folder = root / "manipulated_videos"
    variants = options.methods or (sorted(p.name for p in variants_folder.iterdir() if p.is_dir()) if variants_folder.is_dir() else [])
    if not variants:
        layout.lacks("manipulated_videos/<variant>/")
    fakes = {variant: layout.videos(variants_folder / variant, f"{variant} fakes") for variant in variants}
    lists_folder = Path(options.splits_dir) if options.splits_dir else root / "lists" / "splits"
    lists = {split: layout.file(lists_folder / f"{split}.txt") for split in SPLITS}
    reals_folder = videos_folder(ffpp_root / "original_sequences" / "youtube", options.comp)
    reals = {path.stem: path for path in layout.videos(reals_folder, "FaceForensics++ youtube reals")}
    layout.check()

    split_of = {}
    for split in HELD_OUT_FIRST:
        for name in _read_list(lists[split], root):
            split_of.setdefault(name, split)
    out, unlisted, target_split = [], [], {}
    for variant, paths in fakes.items():
        for path in paths:
            split = split_of.get(path.name)
            target, _, source = path.stem.partition("_")
            if split is None or not source:
                unlisted.append(video_id(path, root))
                continue
            target_split[target] = min(split, target_split.get(target, split), key=HELD_OUT_FIRST.index)
            extra = {"method": variant, "target": target, "source": source,
                     "original": video_id(reals_folder / f"{target}.mp4", ffpp_root), "group": target}
            out.append(VideoRecord(video_id(path, root), str(path), 1, split, "deeperforensics", extra))
    compression = compression_name(options.comp)
    for target, split in sorted(target_split.items()):
        if target in reals:
            extra = {"compression": compression, "group": target, "origin": "ffpp"}
            out.append(VideoRecord(video_id(reals[target], ffpp_root), str(reals[target]), 0, split, "deeperforensics", extra))

    warnings = []
    missing = [f"{variant}/{name}" for variant, paths in fakes.items() for name in sorted(set(split_of) - {p.name for p in paths})]
    if missing:
        warnings.append(count_line(f"fakes named in {shown(lists_folder, root)}/*.txt are missing", missing))
    if unlisted:
        warnings.append(count_line("fakes in no split list, left out", unlisted))
    return Inventory(out, tuple(warnings))


def _read_list(path: Path, root: Path) -> list[str]:
    """File names of a split list, one a line (`000_M101.mp4`)."""
    names = [line.strip() for line in read_text(path, root).splitlines() if line.strip()]
    bad = next((name for name in names if "_" not in name or not name.endswith(".mp4") or "/" in name), None)
    if bad:
        raise ConfigError(f"{shown(path, root)}: {bad!r} is not a fake's file name <target>_<source>.mp4")
    return names
