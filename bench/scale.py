"""`python -m bench.scale` (`make bench-scale`): what the store costs as the number of videos
grows (issue 16), on a local disk and on moto's S3 server.

N tiny face videos (hard links of four distinct 1 s 128x128 clips, under real/ and fake/ in
turn) go through `dfprep features --dataset folder --profile deepfakebench --workers 2` into a
fresh store; then, `--reps` times each, the same command again (a no-op rerun), `dfprep status`,
and `StoreClipDataset(store, ClipSpec(...), splits=None)` in a fresh process. Everything goes
through the command line and the public Dataset class, in subprocesses, as a user runs them.
The section between the markers in BENCHMARKS.md is replaced. `--sizes 50 --s3-sizes 20 --reps
1 --markdown OUT/quick.md` checks that it runs.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench.corpus import talking_head
from bench.report import _cpu, write_section
from feature_store import FeatureStore
from feature_store.schema import Status
from pipeline.sources.demo import encode_video

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench.scale: start -->", "<!-- bench.scale: end -->"
DFDC_VIDEOS = 119_154
CLIPS, CLIP_SIZE = 4, 128
# The Dataset serves windows of this many frames: one a video at the default --frames.
CLIP_LENGTH = 8
PROFILE = "deepfakebench"
BUCKET = "dfprep-scale"
VERSION = 1

# A dfprep command in this process's place: cli.py run as __main__, then, at exit, the
# process's own peak RSS (its workers are other processes) and the modules it imported.
_CLI = """
import atexit, json, os, resource, runpy, sys
def report():
    with open(os.environ["DFPREP_BENCH_REPORT"], "w") as file:
        json.dump({"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "modules": list(sys.modules)}, file)
atexit.register(report)
sys.argv = ["cli.py", *sys.argv[1:]]
runpy.run_path("cli.py", run_name="__main__")
"""
# The start-up of a command: the interpreter plus importing every module that command imported,
# in the order it imported them.
_IMPORTS = """
import importlib, json, sys
for name in json.load(open(sys.argv[1])):
    try:
        importlib.import_module(name)
    except Exception:
        pass
"""
# The Dataset's constructor alone, after its imports.
_DATASET = """
import json, resource, sys, time
from trainer.dataset import ClipSpec, StoreClipDataset
started = time.perf_counter()
dataset = StoreClipDataset(sys.argv[1], ClipSpec(clip_length=int(sys.argv[2])), splits=None)
init_s = time.perf_counter() - started
print(json.dumps({"init_s": init_s, "samples": len(dataset), "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""
# moto's S3 server, logging one line a request to a file.
_MOTO = """
import logging, sys, threading
from moto.server import ThreadedMotoServer
handler = logging.FileHandler(sys.argv[1])
handler.setFormatter(logging.Formatter("%(message)s"))
logger = logging.getLogger("werkzeug")
logger.setLevel(logging.INFO)
logger.addHandler(handler)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
threading.Event().wait()
"""
_REQUEST_LINE = re.compile(r'"[A-Z]+ \S+ HTTP/[0-9.]+" \d{3}')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default=[1000, 5000], help="Numbers of videos on disk [default: 1000,5000].")
    parser.add_argument("--s3-sizes", type=_sizes, default=[200, 1000],
                        help="Numbers of videos on moto's S3 server; empty for none [default: 200,1000].")
    parser.add_argument("--frames", type=int, default=CLIP_LENGTH,
                        help=f"Frames of each 1 s clip, at least {CLIP_LENGTH} (`deepfakebench` keeps up to 32) [default: {CLIP_LENGTH}].")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3, help="Runs of each cheap measurement; the median is reported.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "scale")
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.frames < CLIP_LENGTH:
        parser.error(f"--frames {args.frames}: must be at least {CLIP_LENGTH}, the Dataset's clip length")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    clips = _clips(args.out / "clips", args.frames)
    results = []
    for n in args.sizes:
        tree = _tree(args.out / "trees" / f"n{n}", clips, n)
        results.append(_measure("disk", tree, str(args.out / "stores" / f"n{n}.zarr"), n, args, server=None))
    if args.s3_sizes:
        with _moto_server(args.out / "moto.log") as server:
            for n in args.s3_sizes:
                tree = _tree(args.out / "trees" / f"n{n}", clips, n)
                results.append(_measure("s3", tree, f"s3://{BUCKET}/n{n}.zarr", n, args, server=server))
    summary = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.scale", *(sys.argv[1:] if argv is None else argv)]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "workers": args.workers,
        "frames": args.frames,
        "reps": args.reps,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_section(args.markdown, START, END, _section(summary))
    print(args.markdown.read_text().split(START)[1].split(END)[0])


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers of videos separated by commas, e.g. 1000,5000") from None
    if any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: each size must be at least 2 (a real and a fake video)")
    return sorted(sizes)


# -- the corpus ---------------------------------------------------------------------------

def _clips(folder: Path, frames: int) -> list[Path]:
    """Four distinct 1 s face clips of `frames` frames, written once (a marker says what is there)."""
    marker = folder / "clips.json"
    spec = {"version": VERSION, "clips": CLIPS, "size": CLIP_SIZE, "frames": frames}
    paths = [folder / f"face{index}.mp4" for index in range(CLIPS)]
    if not (marker.exists() and json.loads(marker.read_text()) == spec):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for index, path in enumerate(paths):
            partial = path.with_suffix(".partial.mp4")
            encode_video(partial, itertools.islice(talking_head(index, CLIP_SIZE, CLIP_SIZE), frames), frames, options={})
            os.replace(partial, path)
        marker.write_text(json.dumps(spec))
    return paths


def _tree(root: Path, clips: list[Path], n: int) -> Path:
    """A `folder` dataset root of n hard links to the clips, real/ and fake/ in turn."""
    shutil.rmtree(root, ignore_errors=True)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
    for i in range(n):
        os.link(clips[i % len(clips)], root / ("real", "fake")[i % 2] / f"v{i:06d}.mp4")
    return root


# -- one size -----------------------------------------------------------------------------

def _measure(backend: str, tree: Path, url: str, n: int, args, server: _MotoServer | None) -> dict:
    env = server.env if server else {}
    _remove_store(url, env)
    features = ["features", "--dataset", "folder", "--root", str(tree), "--store", url, "--profile", PROFILE, "--workers", str(args.workers)]
    print(f"{backend} N={n}: first run", flush=True)
    first = _command(features, env, server)
    stage_s, done = _stored_stage_seconds(url, env)
    print(f"{backend} N={n}: {first['wall_s']:.1f} s, {done} done; reruns, status, Dataset", flush=True)
    # Each command next to its start-up, so that a slow spell of this shared machine weighs on both.
    reruns, statuses, datasets = [], [], []
    for _ in range(args.reps):
        reruns.append(_command(features, env, server))
        reruns[-1]["beyond_s"] = reruns[-1]["wall_s"] - _start_up(reruns[-1]["modules"], env)
        statuses.append(_command(["status", "--store", url], env, server))
        statuses[-1]["beyond_s"] = statuses[-1]["wall_s"] - _start_up(statuses[-1]["modules"], env)
        datasets.append(_dataset_init(url, env, server))
    files, size_bytes = _store_size(url, env)
    return {
        "backend": backend, "videos": n, "done": done,
        "first_wall_s": first["wall_s"], "stage_s": stage_s, "first_client_rss_mb": first["peak_rss_mb"],
        "rerun_wall_s": _median(reruns, "wall_s"), "rerun_beyond_s": _median(reruns, "beyond_s"),
        "rerun_requests": _median(reruns, "requests"), "rerun_client_rss_mb": _median(reruns, "peak_rss_mb"),
        "status_wall_s": _median(statuses, "wall_s"), "status_beyond_s": _median(statuses, "beyond_s"),
        "dataset_init_s": _median(datasets, "init_s"), "dataset_samples": datasets[0]["samples"],
        "dataset_requests": _median(datasets, "requests"), "dataset_rss_mb": _median(datasets, "peak_rss_mb"),
        "files": files, "bytes": size_bytes,
    }


def _command(args: list[str], env: dict, server: _MotoServer | None) -> dict:
    """A dfprep command in a subprocess: wall time, its own peak RSS, the modules it imported,
    and the S3 requests made while it ran."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        before = server.requests() if server else None
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", _CLI, *args], capture_output=True, text=True, cwd=ROOT,
                                env={**os.environ, **env, "DFPREP_BENCH_REPORT": str(report)})
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"dfprep {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        exit_report = json.loads(report.read_text())
    return {"wall_s": wall, "peak_rss_mb": exit_report["peak_rss_kb"] / 1024, "modules": exit_report["modules"],
            "requests": server.requests() - before if server else None}


def _start_up(modules: list[str], env: dict) -> float:
    """Wall time of a fresh interpreter importing the same modules as the command did."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as listing:
        json.dump([name for name in modules if name not in ("__main__", "__mp_main__")] + ["cli"], listing)
        listing.flush()
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _IMPORTS, listing.name], check=True, capture_output=True, cwd=ROOT, env={**os.environ, **env})
        return time.perf_counter() - started


def _dataset_init(url: str, env: dict, server: _MotoServer | None) -> dict:
    before = server.requests() if server else None
    result = subprocess.run([sys.executable, "-c", _DATASET, url, str(CLIP_LENGTH)], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, **env})
    if result.returncode != 0:
        raise SystemExit(f"StoreClipDataset({url}) failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.splitlines()[-1])
    return {**report, "peak_rss_mb": report["peak_rss_kb"] / 1024, "requests": server.requests() - before if server else None}


def _stored_stage_seconds(url: str, env: dict) -> tuple[float, int]:
    """The sum of the per-video stage timings the store records, and the videos done. The
    one place this harness reads the store itself."""
    with _environment(env):
        store = FeatureStore(url, mode="r")
        done = [entry for entry, _ in store.entries(store.keys()).values() if entry.status is Status.DONE]
        return sum(sum(entry.timings_s.values()) for entry in done), len(done)


def _store_size(url: str, env: dict) -> tuple[int, int]:
    """Files (objects) and bytes under the store."""
    import fsspec

    with _environment(env):
        fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True)
        sizes = [info["size"] for info in fs.find(path, detail=True).values()]
    return len(sizes), sum(sizes)


def _remove_store(url: str, env: dict) -> None:
    import fsspec

    with _environment(env):
        fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _median(runs: list[dict], name: str) -> float | None:
    values = [run[name] for run in runs]
    return None if None in values else statistics.median(values)


@contextmanager
def _environment(env: dict) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- moto's S3 server ---------------------------------------------------------------------

class _MotoServer:
    """moto's S3 server in its own process; requests() counts the requests it has logged."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.log = process, log
        self.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def requests(self) -> int:
        # A request is logged once its response is sent: give the last one time to land.
        time.sleep(0.3)
        with open(self.log) as lines:
            return sum(1 for line in lines if _REQUEST_LINE.search(line))


@contextmanager
def _moto_server(log: Path) -> Iterator[_MotoServer]:
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-c", _MOTO, str(log)], stdout=subprocess.PIPE, text=True)
    try:
        server = _MotoServer(process, int(process.stdout.readline()), log)
        import s3fs

        with _environment(server.env):
            s3fs.S3FileSystem(skip_instance_cache=True).call_s3("create_bucket", Bucket=BUCKET)
        yield server
    finally:
        process.kill()
        process.wait()


# -- the report ---------------------------------------------------------------------------

def _figures(r: dict, workers: int) -> dict:
    """The figures of one size, as totals (seconds, files, requests) over its N videos."""
    return {
        "first_videos_per_s": r["videos"] / r["first_wall_s"],
        "overhead_s": r["first_wall_s"] - r["stage_s"] / workers,
        "rerun_s": r["rerun_beyond_s"],
        "status_s": r["status_beyond_s"],
        "dataset_s": r["dataset_init_s"],
        "files": r["files"],
        "bytes": r["bytes"],
        "rerun_requests": r["rerun_requests"],
        "dataset_requests": r["dataset_requests"],
    }


def _at_dfdc(points: list[tuple[int, float]]) -> float:
    """A total at DFDC's size: on the line through the two largest sizes measured (a fixed
    part plus a part a video), or proportional to N from a single size."""
    if len(points) == 1:
        (n, value), = points
        return value * DFDC_VIDEOS / n
    (n1, v1), (n2, v2) = points[-2:]
    return v1 + (v2 - v1) / (n2 - n1) * (DFDC_VIDEOS - n1)


def _section(s: dict) -> str:
    workers = s["workers"]
    rows, extrapolated, growth = [], [], []
    for backend in ("disk", "s3"):
        results = [r for r in s["results"] if r["backend"] == backend]
        if not results:
            continue
        figures = [(r, _figures(r, workers)) for r in results]
        for r, f in figures:
            n = r["videos"]
            requests = "-" if f["rerun_requests"] is None else f"{f['rerun_requests']:.0f} / {f['dataset_requests']:.0f}"
            done = "" if r["done"] == n else f" ({r['done']} done)"
            rows.append(
                f"| {backend} | {n}{done} | {f['first_videos_per_s']:.2f} | {1000 * f['overhead_s'] / n:.0f} | "
                f"{r['rerun_wall_s']:.2f} ({f['rerun_s']:.2f}) | {r['status_wall_s']:.2f} ({f['status_s']:.2f}) | {f['dataset_s']:.2f} | "
                f"{f['files'] / n:.1f} | {f['bytes'] / n / 1e3:.0f} | {r['first_client_rss_mb']:.0f} / {r['rerun_client_rss_mb']:.0f} / "
                f"{r['dataset_rss_mb']:.0f} | {requests} |")

        dfdc = {name: _at_dfdc([(r["videos"], f[name]) for r, f in figures]) for name in figures[0][1] if figures[0][1][name] is not None}
        requests = f"{dfdc['rerun_requests'] / 1e3:.1f} k / {dfdc['dataset_requests'] / 1e3:.1f} k" if backend == "s3" else "-"
        extrapolated.append(
            f"| {backend} | {dfdc['overhead_s'] / 3600:.1f} h | {dfdc['rerun_s'] / 60:.1f} min | {dfdc['status_s'] / 60:.1f} min | "
            f"{dfdc['dataset_s'] / 60:.1f} min | {dfdc['files'] / 1e6:.2f} M | {dfdc['bytes'] / 1e9:.0f} GB | {requests} |")
        if backend == "s3" and len(figures) > 1:
            (small, f_small), (large, f_large) = figures[0], figures[-1]
            added = large["videos"] - small["videos"]
            growth.append(
                f"S3 requests from N = {small['videos']} to N = {large['videos']}: no-op rerun {f_small['rerun_requests']:.0f} -> "
                f"{f_large['rerun_requests']:.0f} ({(f_large['rerun_requests'] - f_small['rerun_requests']) / added:.2f} a video added), "
                f"Dataset init {f_small['dataset_requests']:.0f} -> {f_large['dataset_requests']:.0f} "
                f"({(f_large['dataset_requests'] - f_small['dataset_requests']) / added:.2f} a video added).")
    uname = platform.uname()
    return f"""## The store at scale (`bench.scale`)

```bash
{s['command']}
```

Machine: {uname.system} {uname.release} {uname.machine}, {_cpu()}, {os.cpu_count()} cores (nproc),
{psutil.virtual_memory().total / 2**30:.0f} GiB. Load average (1 min) {s['load_before'][0]:.2f} before,
{s['load_after'][0]:.2f} after. Started {s['started']}, commit `{s['commit']}`, Python {platform.python_version()}.

Corpus: N hard links of {CLIPS} distinct {s['frames']}-frame {CLIP_SIZE}x{CLIP_SIZE} H.264 face clips (1 s at {s['frames']} fps), a
`folder` dataset; `dfprep features --profile {PROFILE} --workers {workers}` into a fresh store (on disk, or
on moto's S3 server in its own process on this machine), then {s['reps']} runs of each cheap measurement,
medians reported. Every figure comes from the command line or the public `StoreClipDataset`, each in
its own process.

- first run: N / the command's wall time; overhead a video: (wall - the stored per-video stage
  timings summed / workers) / N, so start-up, planning, scheduling, the index and idle workers.
- no-op rerun and `status`: the command's wall time, and in brackets the median of each run's wall
  time minus its start-up, measured right after it: a fresh interpreter importing every module the
  command had imported by its exit (listed by the command itself at exit, then imported in the same
  order in another process).
- Dataset init: `StoreClipDataset(store, ClipSpec(clip_length={CLIP_LENGTH}), splits=None)` timed alone in a
  fresh process, after its imports.
- files and kB a video: every file (object) under the store and their bytes, over N.
- client peak RSS: the peak RSS of the `features` process itself (its workers are other processes) on
  the first run / on a no-op rerun, and of the Dataset's process.
- S3 requests: the requests moto's server logged while the command (or the Dataset's process) ran,
  one log line a request, whichever process made it.

| store | N | first run videos/s | overhead ms a video | no-op rerun s (beyond start-up) | `status` s (beyond start-up) | Dataset init s | files a video | kB a video | client peak RSS MB: first run / rerun / Dataset | S3 requests: rerun / Dataset init |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

At DFDC's {DFDC_VIDEOS:,} videos, on the line through the two largest sizes of each store (a fixed part plus
a part a video; proportional to N where one size was measured). These clips are tiny: the first run's
stage work and the bytes are these clips', not DFDC's (the profile keeps up to 32 frames of a longer
video); the overhead beyond the stages, the files and the requests depend on a video's frame count only
through its chunks.

| store | first-run overhead | no-op rerun (beyond start-up) | `status` (beyond start-up) | Dataset init | files | bytes | S3 requests: rerun / Dataset init |
| --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(extrapolated)}
{"".join(chr(10) + line + chr(10) for line in growth)}"""


if __name__ == "__main__":
    main()
