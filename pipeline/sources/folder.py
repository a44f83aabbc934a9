"""`folder`: a root with `real/` and `fake/` (any depth, any video extension)."""

from __future__ import annotations

from pathlib import Path

from pipeline.sources.base import SourceOptions, VideoRecord, seeded_split, video_files
from stages.errors import ConfigError


def records(root: Path, options: SourceOptions) -> list[VideoRecord]:
    missing = [name for name in ("real", "fake") if not (root / name).is_dir()]
    if missing:
        raise ConfigError(f"--root {root}: expected folders real/ and fake/, missing {', '.join(m + '/' for m in missing)}")
    out = []
    for label, name in ((0, "real"), (1, "fake")):
        for path in video_files(root / name):
            relative = path.relative_to(root)
            out.append(
                VideoRecord(
                    video_id=relative.with_suffix("").as_posix(),
                    path=str(path),
                    label=label,
                    split=seeded_split(path.stem, options.seed, options.split_ratios),
                    dataset="folder",
                    extra={"group": path.stem},
                )
            )
    return out
