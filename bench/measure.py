"""The measurements `make bench` takes: whole runs of both pipelines, the bare cost of each
stage's work, loader throughput, and what both leave on disk."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import dlib
import numpy as np
import torch
import zarr

from feature_store import FeatureStore, schema
from feature_store.schema import Status, VideoEntry
from stages import faces
from stages.faces import model_path
from trainer.dataset import ClipSpec, StoreClipDataset, batch_loader

ROOT = Path(__file__).resolve().parents[1]


def run_baseline(out: Path, videos: list[Path], with_flow: bool) -> dict:
    """The reference baseline in its own process, so that its peak memory is its own."""
    flag = ["--flow"] if with_flow else []
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "bench.baseline", *flag, str(out), *map(str, videos)],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(result.stdout)
    # The whole command, as for dfprep; the script's own clock starts after its imports.
    report["work_s"], report["wall_s"] = report["wall_s"], time.perf_counter() - started
    report["bytes"] = disk_bytes(out)
    return report


def run_dfprep(root: Path, store: Path, profile: str, workers: int) -> dict:
    """`dfprep features` as a user runs it, timed from the shell's point of view."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "cli.py", "features", "--dataset", "folder", "--root", str(root), "--store", str(store),
                    "--profile", profile, "--workers", str(workers)], capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    entries = [entry for entry, _ in stored_entries(store)]
    return {
        "wall_s": wall,
        "videos": [{"video": e.video_id, "frames": e.video["n_frames"], "sampled": e.counts.frames,
                    "found": e.counts.face_found, "crops": e.counts.frames, "flows": e.counts.flows, "timings_s": e.timings_s,
                    "peak_rss_mb": e.worker_peak_rss_mb} for e in entries if e.status is Status.DONE],
        "failed": [e.video_id for e in entries if e.status is not Status.DONE],
        "bytes": disk_bytes(store),
        "files": sum(1 for path in Path(store).rglob("*") if path.is_file()),
    }


def stored_entries(store: Path) -> list[tuple[VideoEntry, str]]:
    """Every complete video's entry and key, from the groups."""
    opened = FeatureStore(store, mode="r")
    return [(entry, key) for key, (entry, _) in opened.entries(opened.keys()).items()]


def startup_seconds(root: Path, store: Path, workers: int) -> float:
    """What a `dfprep features` run costs before and besides its videos' work (interpreter,
    imports, cluster start, planning, manifest): a one-video run's wall time minus that
    video's recorded stage times, model loading included in the latter."""
    run = run_dfprep(root, store, "deepfakebench", workers)
    return run["wall_s"] - sum(run["videos"][0]["timings_s"].values())


def bare_stage_costs(store_path: Path, corpus: dict[str, Path]) -> dict[str, float]:
    """Seconds of one core spent on the work alone, for the videos of a dfprep store: decoding
    the same frames with PyAV, dlib detection and landmarks on the same frames, Farneback on
    the same crops, and writing the same arrays with the same codecs."""
    store = FeatureStore(store_path, mode="r")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))
    costs = {"decode": 0.0, "detect": 0.0, "landmarks": 0.0, "flow": 0.0, "write": 0.0}
    scratch = zarr.open_group(str(store_path.parent / "bare-writes.zarr"), mode="w")
    for entry, key in stored_entries(store_path):
        video = store.open_video(key)
        track = video.track()
        frame_index, clip_index = track["frame_index"][0].astype(int), track["clip_index"][0].astype(int)
        boxes = schema.boxes_of(track)[0] / entry.video["frame_scale"]
        started = time.perf_counter()
        frames = _bare_decode(corpus[entry.video_id], frame_index)
        costs["decode"] += time.perf_counter() - started
        searched = faces.detection_positions(frame_index, clip_index, entry.config["faces"]["detect_interval"])
        started = time.perf_counter()
        for t in searched:
            scale = min(1.0, 640 / frames[t].shape[1])
            detector(cv2.resize(cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), 0)
        costs["detect"] += time.perf_counter() - started
        started = time.perf_counter()
        for frame, box in zip(frames, boxes):
            predictor(frame, dlib.rectangle(*[int(v) for v in box]))
        costs["landmarks"] += time.perf_counter() - started
        arrays = {name: array[...] for name, array in video.arrays.items()}
        if schema.FLOW in arrays:
            grays = [cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) for crop in arrays[schema.FRAMES].reshape(-1, *arrays[schema.FRAMES].shape[-3:])]
            started = time.perf_counter()
            for a in np.flatnonzero(track["flow_valid"][0]):
                cv2.calcOpticalFlowFarneback(grays[a], grays[a + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
            costs["flow"] += time.perf_counter() - started
        started = time.perf_counter()
        target = scratch.create_group(key)
        for name, data in arrays.items():
            source = video[name]
            array = target.create_array(name, shape=data.shape, dtype=data.dtype, chunks=source.chunks, shards=source.shards,
                                        filters=source.filters, compressors=source.compressors,
                                        config={"write_empty_chunks": True})
            array[...] = data
        costs["write"] += time.perf_counter() - started
    return costs


def _bare_decode(path: Path, frame_index: np.ndarray) -> list[np.ndarray]:
    wanted, last = set(frame_index.tolist()), int(frame_index.max())
    kept = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1  # one core, as each dfprep worker decodes
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                kept.append(frame.to_ndarray(format="rgb24"))
            if i == last:
                break
    return kept


class _PngFolder(torch.utils.data.Dataset):
    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return torch.from_numpy(cv2.cvtColor(cv2.imread(str(self.files[index])), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)


def loader_throughput(store: Path, png_folder: Path, workers: int = 2, passes: int = 8, rounds: int = 7,
                      warmup: int = 2) -> dict[str, float]:
    """Crops a second served to a training loop with `workers` persistent loader processes,
    from a warm store and from the baseline's PNG files: `warmup` epochs of each, then
    `rounds` rounds of an epoch of the store and an epoch of PNG files; the median round, and
    the median of each round's ratio, store to PNG: the two epochs of a round run within
    seconds of each other, so a slow spell of this shared machine weighs on both. Seven
    rounds, since on one machine a slow spell took two of five store rounds to half speed
    (make bench at 1da9fd0), and most often in the first rounds.
    An epoch goes `passes` times over the data in random order: the bench corpus makes only
    7 batches of clips and 2 of PNG files, and at each epoch's end the loader workers wait for
    the next, a stall a training set of real size hardly sees."""
    dataset = StoreClipDataset(str(store), ClipSpec(clip_length=16), splits=None)
    pngs = _PngFolder(sorted(png_folder.rglob("*.png")))

    def sampler(data):
        return torch.utils.data.RandomSampler(data, num_samples=passes * len(data))

    loaders = {
        "store": (batch_loader(dataset, sampler(dataset), 8, workers, persistent_workers=True), 16),
        "png": (torch.utils.data.DataLoader(pngs, batch_size=128, sampler=sampler(pngs), num_workers=workers, persistent_workers=True), 1),
    }
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for round_ in range(warmup + rounds):
        for name, (loader, crops_per_item) in loaders.items():
            rate = _crops_per_s(loader, crops_per_item)
            if round_ >= warmup:
                rates[name].append(rate)
    return {
        **{name: statistics.median(values) for name, values in rates.items()},
        **{f"{name}_rounds": values for name, values in rates.items()},
        "ratio": statistics.median(store / png for store, png in zip(rates["store"], rates["png"])),
        "warmup": warmup,
        "store_crops": len(dataset) * 16,
        "png_crops": len(pngs),
    }


def _crops_per_s(loader, crops_per_item: int) -> float:
    started, count = time.perf_counter(), 0
    for batch in loader:
        count += len(batch["frames"] if isinstance(batch, dict) else batch) * crops_per_item
    return count / (time.perf_counter() - started)


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
