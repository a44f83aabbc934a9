"""`python -m bench` (`make bench`): dfprep against the reference baseline, in one run.

Each pipeline runs `--reps` times over the same corpus, alternating, with fresh outputs; the
report gives medians and ratios of the same run, since the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import statistics
from pathlib import Path

from bench import measure, report
from bench.torch_flow import torch_flow_check
from bench.corpus import ensure_corpus

ROOT = Path(__file__).resolve().parents[1]
MEGAMIND = ROOT.parent / "shared" / "fixtures" / "Megamind.avi"
RUNS = ("baseline", "dfprep_deepfakebench", "baseline_flow", "dfprep_default")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    videos = ensure_corpus(args.out / "corpus", MEGAMIND)
    dataset = _folder_tree(args.out / "dataset", videos)
    corpus = {f"real/{path.stem}": path for path in videos}
    one_video = _folder_tree(args.out / "one_video", videos[-2:-1])
    startups = []
    results: dict[str, list[dict]] = {name: [] for name in RUNS}
    for rep in range(args.reps):
        for name in RUNS:
            out = args.out / "runs" / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            if name.startswith("baseline"):
                results[name].append(measure.run_baseline(out, videos, with_flow=name == "baseline_flow"))
            else:
                profile = name.removeprefix("dfprep_")
                results[name].append(measure.run_dfprep(dataset, out / "store.zarr", profile, args.workers))
            print(f"rep {rep + 1}/{args.reps} {name}: {results[name][-1]['wall_s']:.1f} s", flush=True)
        startup_store = args.out / "runs" / "startup.zarr"
        shutil.rmtree(startup_store, ignore_errors=True)
        startups.append(measure.startup_seconds(one_video, startup_store, args.workers))
    default_store = args.out / "runs" / "dfprep_default" / "store.zarr"
    bare = measure.bare_stage_costs(default_store, corpus)
    loader = measure.loader_throughput(default_store, args.out / "runs" / "baseline")
    torch_flow = torch_flow_check(default_store)
    summary = {
        "started": started.isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "workers": args.workers,
        "reps": args.reps,
        "videos": [p.name for p in videos],
        "source_frames": sum(v["frames"] for v in results["baseline"][0]["videos"]),
        "runs": {name: _median_run(runs) for name, runs in results.items()},
        "all_walls": {name: [r["wall_s"] for r in runs] for name, runs in results.items()},
        "bare_s": bare,
        "startup_s": statistics.median(startups),
        "loader": loader,
        "torch_flow": torch_flow,
        "png_bytes": sum(p.stat().st_size for p in (args.out / "runs" / "baseline").rglob("*.png")),
        "png_count": len(list((args.out / "runs" / "baseline").rglob("*.png"))),
        "store_frames_bytes": report.frames_bytes(default_store),
        "last": {name: runs[-1] for name, runs in results.items()},
    }
    report.write(summary, ROOT / "BENCHMARKS.md", ROOT / "docs" / "bench_breakdown.png")
    print((ROOT / "BENCHMARKS.md").read_text().split(report.START)[1].split(report.END)[0])


def _median_run(runs: list[dict]) -> dict:
    median = statistics.median(r["wall_s"] for r in runs)
    return min(runs, key=lambda r: abs(r["wall_s"] - median))


def _folder_tree(root: Path, videos: list[Path]) -> Path:
    """The corpus as a `folder` dataset: every video under real/, nothing under fake/."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    for video in videos:
        (root / "real" / video.name).symlink_to(video.resolve())
    return root


if __name__ == "__main__":
    main()
