"""`python -m bench.cluster` (`make bench-cluster`): how `features` scales from one worker
process to two, and a worker's peak memory on a 4K video (issue 8).

Scaling: eight 10 s 1280x720 talking-head clips, `--workers 1` and `--workers 2` alternating,
`--reps` times each with fresh stores; source frames per second is the stored videos' source
frame count over the command's wall time, start-up included. Memory: one 2 s 3840x2160 clip
through the `default` profile on one worker, the peak RSS its worker records
(`worker_peak_rss_mb`) and the largest RSS seen by polling the worker processes. The section
between the markers in BENCHMARKS.md is replaced. `--quick` (two short 360p clips, a 1 s 4K
clip, written to bench/out/cluster/quick.md) only checks that the benchmark runs.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import distributed
import psutil

from bench.corpus import FPS, talking_head
from bench.report import _cpu, write_section
from feature_store import FeatureStore
from feature_store.schema import Status
from pipeline.sources.demo import encode_video

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench.cluster: start -->", "<!-- bench.cluster: end -->"
# Scaling compares worker processes of one core each: with the default two flow threads, a
# lone worker's flow already uses the second core (16.2 s instead of 20.7 s for its corpus,
# medians of 3), and the ratio would no longer say how processes scale.
SCALING_SETTINGS = ("--set", "flow.threads=1")
SCALING_TARGET, MEMORY_TARGET_MB = 1.8, 2048
VERSION = 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="Two short 360p clips and a 1 s 4K clip: checks that it runs.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "cluster")
    parser.add_argument("--markdown", type=Path, help="Where the section goes [default: BENCHMARKS.md; --quick: OUT/quick.md].")
    args = parser.parse_args()
    markdown = args.markdown or (args.out / "quick.md" if args.quick else ROOT / "BENCHMARKS.md")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    sizes, seconds, uhd_seconds = ([(360, 640)] * 2, 2, 1) if args.quick else ([(720, 1280)] * 8, 10, 2)
    corpus = _clips(args.out / ("quick" if args.quick else "corpus"), sizes, seconds)
    uhd = _clips(args.out / ("quick_4k" if args.quick else "4k"), [(2160, 3840)], uhd_seconds)

    runs = {1: [], 2: []}
    for rep in range(args.reps):
        for workers in (1, 2):
            runs[workers].append(_features(corpus, args.out / "runs" / f"workers{workers}.zarr", workers, SCALING_SETTINGS))
            print(f"rep {rep + 1}/{args.reps} --workers {workers}: {runs[workers][-1]['wall_s']:.1f} s, "
                  f"{runs[workers][-1]['fps']:.1f} source frames/s", flush=True)
    memory = _features(uhd, args.out / "runs" / "4k.zarr", 1)
    print(f"4K: worker peak {memory['peak_rss_mb']:.0f} MB recorded, {memory['polled_peak_mb']:.0f} MB polled", flush=True)

    summary = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.cluster", *sys.argv[1:]]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "corpus": f"{len(sizes)} clips of {seconds} s at {FPS} fps, {sizes[0][1]}x{sizes[0][0]}, H.264 (x264 defaults)",
        "runs": runs,
        "memory": memory,
        "uhd": f"{uhd_seconds} s 3840x2160 H.264 at {FPS} fps",
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    write_section(markdown, START, END, _section(summary))
    print(markdown.read_text().split(START)[1].split(END)[0])


def _clips(folder: Path, sizes: list[tuple[int, int]], seconds: int) -> Path:
    """A `folder` dataset root (clips under real/ and fake/ in turn: the labels do not matter
    here), written once; a marker says what is there."""
    marker = folder / "corpus.json"
    spec = {"version": VERSION, "sizes": sizes, "seconds": seconds}
    if not (marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(spec))):
        shutil.rmtree(folder, ignore_errors=True)
        for label in ("real", "fake"):
            (folder / label).mkdir(parents=True)
        for index, (height, width) in enumerate(sizes):
            partial = folder / f"clip{index}.partial.mp4"
            encode_video(partial, itertools.islice(talking_head(index, height, width), seconds * FPS), FPS, options={})
            os.replace(partial, folder / ("real", "fake")[index % 2] / f"talking_{height}p_{index}.mp4")
        marker.write_text(json.dumps(spec))
    return folder


def _features(root: Path, store: Path, workers: int, settings: tuple[str, ...] = ()) -> dict:
    """One `dfprep features` command on a fresh store, timed as a whole, its worker
    processes' RSS polled while it runs."""
    shutil.rmtree(store, ignore_errors=True)
    store.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    command = subprocess.Popen([sys.executable, "cli.py", "features", "--dataset", "folder", "--root", str(root), "--store", str(store),
                                "--workers", str(workers), *settings], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    polled = {"peak_mb": 0.0}
    poller = threading.Thread(target=_poll_children, args=(command, polled), daemon=True)
    poller.start()
    output = command.communicate()[0]
    wall = time.perf_counter() - started
    poller.join()
    if command.returncode != 0:
        raise SystemExit(f"features --workers {workers} failed:\n{output[-3000:]}")
    opened = FeatureStore(store, mode="r")
    entries = [entry for entry, _ in opened.entries(opened.keys()).values() if entry.status is Status.DONE]
    frames = sum(entry.video["n_frames"] for entry in entries)
    return {"workers": workers, "wall_s": wall, "videos": len(entries), "source_frames": frames, "fps": frames / wall,
            "peak_rss_mb": max(entry.worker_peak_rss_mb for entry in entries), "polled_peak_mb": polled["peak_mb"]}


def _poll_children(command: subprocess.Popen, polled: dict) -> None:
    """The largest RSS of any one process under the command but itself: its workers."""
    parent = psutil.Process(command.pid)
    while command.poll() is None:
        try:
            children = parent.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:
                polled["peak_mb"] = max(polled["peak_mb"], child.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)


def _section(s: dict) -> str:
    one, two = (statistics.median(run["fps"] for run in s["runs"][w]) for w in (1, 2))
    ratio, memory = two / one, s["memory"]
    rows = "\n".join(f"| `--workers {w}` | {_each(s['runs'][w], 'wall_s')} | {_each(s['runs'][w], 'fps')} | **{median:.1f}** |"
                     for w, median in ((1, one), (2, two)))
    uname = platform.uname()
    peak = max(memory["peak_rss_mb"], memory["polled_peak_mb"])
    return f"""## Scaling and memory on a cluster's worker (`bench.cluster`)

```bash
{s['command']}
```

Machine: {uname.system} {uname.release} {uname.machine}, {_cpu()}, {os.cpu_count()} cores (nproc),
{psutil.virtual_memory().total / 2**30:.0f} GiB. Load average (1 min) {s['load_before'][0]:.2f} before,
{s['load_after'][0]:.2f} after. Started {s['started']}, commit `{s['commit']}`, Python
{platform.python_version()}, dask {dask.__version__}, distributed {distributed.__version__}.

Corpus: {s['corpus']}. `default` profile with `{' '.join(SCALING_SETTINGS)}` (one core a worker process: with
the default two flow threads a lone worker's flow also uses the second core), a fresh store each run, `features` timed as a whole
(interpreter, cluster start and manifest included); source frames per second is the stored
videos' source frame count over that wall time.

| run | wall s (each rep) | source frames/s (each rep) | median |
| --- | --- | --- | --- |
{rows}

Two worker processes against one: **{ratio:.3f}x** (target at least {SCALING_TARGET}x: {'met' if ratio >= SCALING_TARGET else 'not met'}).

Memory on a {s['uhd']} clip, `default` profile, `--workers 1`: the worker's peak RSS is
**{memory['peak_rss_mb']:.0f} MB** as it records it (`worker_peak_rss_mb`, from getrusage) and
{memory['polled_peak_mb']:.0f} MB as the largest RSS of a worker process polled every 50 ms
(target below {MEMORY_TARGET_MB} MB: {'met' if peak < MEMORY_TARGET_MB else 'not met'}).
"""


def _each(runs: list[dict], name: str) -> str:
    return ", ".join(f"{run[name]:.1f}" for run in runs)


if __name__ == "__main__":
    main()
