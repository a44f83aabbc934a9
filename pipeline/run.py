"""`features`: records -> plan -> one Dask task per video -> manifest."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dask
from distributed import Client, KilledWorker, LocalCluster, as_completed
from tqdm import tqdm

from feature_store import FeatureStore, manifest
from feature_store.schema import IndexRow, Status
from pipeline import plan as planner
from pipeline.cluster import (ALLOWED_FAILURES, DASHBOARD_ADDRESS, SINGLE_THREAD_ENV, JobqueueSpec, SingleThreaded,
                              dashboard_address, jobqueue_cluster)
from pipeline.limits import VIDEO_TIMEOUT_S, WORKER_MEMORY
from pipeline.process import VideoOutcome, WorkItem, base_entry, parent_of_forked_workers, process_video
from pipeline.profiles import Profile
from pipeline.sources import load_inventory
from pipeline.sources.base import Inventory, SourceOptions
from pipeline.terminal import printable
from stages.errors import ConfigError, StoreError

MANIFEST_EVERY_S = 30.0


@dataclass(frozen=True)
class FeaturesRequest:
    dataset: str
    root: str
    store: str
    profile: Profile
    workers: int | None = None
    scheduler: str | None = None
    cluster: JobqueueSpec | None = None
    limit: int | None = None
    force: bool = False
    retry_failed: bool = False
    video_timeout_s: float | None = VIDEO_TIMEOUT_S
    worker_memory: str = WORKER_MEMORY  # a size dask reads ("3GB"), or "0" for no limit
    dashboard_address: str | None = None  # None: what a --cluster-config file says, else DASHBOARD_ADDRESS
    source_options: SourceOptions = SourceOptions()

    def __post_init__(self):
        try:
            dask.utils.parse_bytes(self.worker_memory)
        except (ValueError, TypeError):
            raise ConfigError(f"--worker-memory {self.worker_memory}: not a size; e.g. 3GB, 2500MB, or 0 for no limit") from None


@dataclass
class RunSummary:
    videos: int = 0
    processed: int = 0
    skipped: int = 0
    relabelled: int = 0
    stage_runs: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        stage_text = ", ".join(f"{stage} {self.stage_runs[stage]}" for stage in ("decode", "faces", "flow"))
        lines = [
            ("videos", self.videos, ""),
            ("processed", self.processed, f"stages run: {stage_text}"),
            ("skipped", self.skipped, "unchanged" + (f"; {self.relabelled} relabelled" if self.relabelled else "")),
            ("done", self.statuses[Status.DONE], ""),
            ("no face", self.statuses[Status.NO_FACE], ""),
            ("failed", self.statuses[Status.FAILED], ""),
        ]
        text = "\n".join(f"{name:<10}{count:>7}  {note}".rstrip() for name, count, note in lines)
        text += f"\n{'time':<10}{self.seconds:>6.1f}s"
        for video_id, error in self.failures[:20]:
            text += f"\n  failed  {printable(video_id)}: {printable(error)}"
        if len(self.failures) > 20:
            text += f"\n  ... and {len(self.failures) - 20} more (dfprep status)"
        return text


def build_features(request: FeaturesRequest, progress: bool = True,
                   on_inventory: Callable[[Inventory], None] | None = None,
                   on_dashboard: Callable[[str], None] | None = None) -> RunSummary:
    """Run `features`; `on_inventory` sees what the source found before any work starts,
    `on_dashboard` the cluster's dashboard address once it is up."""
    started = time.perf_counter()
    # The dataset is listed first, so that a wrong root or a partial tree leaves no store
    # behind; listing only reads (the demo corpus is written file by file, atomically).
    inventory = load_inventory(request.dataset, request.root, request.source_options)
    if on_inventory:
        on_inventory(inventory)
    records = inventory.records
    if request.limit is not None:
        records = records[: request.limit]
    store = open_writable_store(request.store)
    with store.lock():
        summary = RunSummary(videos=len(records))
        run_id = uuid.uuid4().hex[:12]
        rows = {row.key: row for row in manifest.begin_run(store, run_id)}
        work_plan = planner.plan(records, rows, store, request.profile, force=request.force,
                                 retry_failed=request.retry_failed, run_id=run_id)
        rows.update(work_plan.unchanged)
        summary.skipped, summary.relabelled = len(work_plan.unchanged), work_plan.relabelled
        summary.statuses.update(row.status for row in work_plan.unchanged.values())
        pending = {item.key for item in work_plan.work}
        try:
            for outcome in _execute(work_plan.work, store, request, rows, pending, progress, on_dashboard):
                summary.processed += 1
                summary.statuses[outcome.status] += 1
                summary.stage_runs.update(outcome.stages)
                if outcome.status is Status.FAILED:
                    summary.failures.append((outcome.row.video_id, outcome.error))
        except StoreError as exc:
            _stop_on_store_error(store, rows, pending, exc)
        manifest.end_run(store, rows.values())
    summary.seconds = time.perf_counter() - started
    return summary


def _stop_on_store_error(store: FeatureStore, rows: dict[str, IndexRow], pending: set[str], error: StoreError) -> None:
    """A store that cannot be written (full, read-only, no permission, no credentials) is not
    the videos' fault: the run stops, the index keeps what was done, and the videos not
    finished leave it, so that the next run does them again."""
    for key in pending:
        rows.pop(key, None)
    try:
        manifest.end_run(store, rows.values())
        saved = "the index holds the videos done so far"
    except StoreError:
        saved = "the index could not be saved either; the next run rebuilds it from the videos"
    raise StoreError(f"run stopped: {error}; {saved}; the next run resumes") from error


def open_writable_store(url: str) -> FeatureStore:
    """Open or create the store, turning an unusable location into a one-line user error."""
    if "://" not in url:
        path = Path(url)
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            raise ConfigError(f"--store {url}: not writable ({exc.strerror or exc})") from exc
    try:
        return FeatureStore(url)
    except StoreError as exc:
        raise ConfigError(f"--store {url}: {exc}") from exc


def _execute(work: list[WorkItem], store: FeatureStore, request: FeaturesRequest, rows: dict[str, IndexRow],
             pending: set[str], progress: bool, on_dashboard: Callable[[str], None] | None):
    """Yield each video's outcome as it completes, keeping the index current. A store error
    in a task (it could not write, or open the store) ends the run: it is raised here. With
    no work, no cluster is started."""
    if not work:
        return
    by_key = {item.key: item for item in work}
    last_manifest = time.monotonic()
    with _client(request) as client:
        client.register_plugin(SingleThreaded())
        if on_dashboard:
            on_dashboard(client.dashboard_link)
        futures = client.map(
            process_video, work, store_url=store.url, profile=request.profile, timeout_s=request.video_timeout_s,
            key=[f"video-{item.key}" for item in work], pure=False,
        )
        with tqdm(total=len(work), unit="video", desc="features", disable=not progress, dynamic_ncols=True) as bar:
            counts = Counter()
            for future in as_completed(futures):
                item = by_key[future.key.removeprefix("video-")]
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - the task itself failed, or its workers died
                    outcome = task_failure(item, store, request.profile, exc)
                future.release()
                if outcome.store_error:
                    raise StoreError(outcome.store_error)
                pending.discard(item.key)
                rows[item.key] = outcome.row
                counts[outcome.status] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update()
                if time.monotonic() - last_manifest > MANIFEST_EVERY_S:
                    manifest.write(store, rows.values())
                    last_manifest = time.monotonic()
                yield outcome


def task_failure(item: WorkItem, store: FeatureStore, profile: Profile, exc: Exception) -> VideoOutcome:
    """Record a video whose task raised or whose worker process died on it more often than
    Dask's `allowed-failures` (a crash in native code, memory)."""
    if isinstance(exc, KilledWorker):
        error = "worker died: every worker that ran it died (a crash in native code or out of memory)"
    else:
        error = f"error: {type(exc).__name__}: {exc}"
    return VideoOutcome(store.write_video(item.key, base_entry(item, profile, Status.FAILED, error), {}), ())


@contextmanager
def _client(request: FeaturesRequest):
    scheduler, jobqueue = request.scheduler, request.cluster
    if scheduler:
        # A running cluster keeps its own settings (allowed-failures among them): it may be shared.
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot connect ({exc})") from exc
        with client:
            yield client
        return
    dashboard = dashboard_address(request.dashboard_address, jobqueue)
    if jobqueue:
        with dask.config.set(_cluster_settings(dashboard, fork=False)), jobqueue_cluster(jobqueue, dashboard) as cluster, \
                Client(cluster) as client:
            yield client
        return
    with local_client(request.profile, request.workers, request.worker_memory, dashboard) as client:
        yield client


@contextmanager
def local_client(profile: Profile, workers: int | None = None, worker_memory: str = WORKER_MEMORY,
                 dashboard: str = DASHBOARD_ADDRESS) -> Iterator[Client]:
    """A client of a LocalCluster of single-threaded worker processes (one per core unless
    `workers`), each restarted past `worker_memory`, its dashboard at `dashboard` (distributed
    reads None as its default, every interface's port 8787)."""
    # macOS's system libraries do not survive a fork, nor does torch's OpenMP pool once a
    # process has used it (a library user's process may have); OpenCV's is emptied below.
    fork = sys.platform.startswith("linux") and "torch" not in sys.modules
    # Kept for the cluster's lifetime: the nanny forks a replacement for a worker that died.
    with contextlib.ExitStack() as stack:
        stack.enter_context(dask.config.set(_cluster_settings(dashboard, fork)))
        if fork:
            stack.enter_context(parent_of_forked_workers(profile))
        cluster = stack.enter_context(LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            memory_limit=worker_memory,
            # A free port (runs side by side on one machine then do not warn about 8787), on
            # this machine only unless asked.
            dashboard_address=dashboard,
            silence_logs=logging.ERROR,
            env=SINGLE_THREAD_ENV,
        ))
        yield stack.enter_context(Client(cluster))


def _cluster_settings(dashboard: str | None, fork: bool) -> dict:
    """Dask's settings for the clusters dfprep starts."""
    settings = {
        # A worker holds only the task it runs, none queued behind it: a worker ended by a
        # video's time limit then counts against no other video's allowed failures.
        "distributed.scheduler.worker-saturation": 1.0,
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
        # Workers fork from this process with the libraries imported and the models loaded,
        # instead of each starting an interpreter and loading them again (seconds a run), and
        # end as fast. The store lock's descriptor is closed in the children (filelock >= 4).
        "distributed.worker.multiprocessing-method": "fork" if fork else "spawn",
        # Dask's sampling profiler walks each worker's stack every 10 ms, 2-3% of a core, to
        # show what the store's per-video stage timings already say.
        "distributed.worker.profile.enabled": False,
        # Each process's event loop woke 50 times a second to time itself and twice to read
        # the system's counters, taking the core from the other worker's video: two workers
        # ran 4% slower (bench.cluster). Only the dashboard's graphs update less often.
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
    }
    dashboard_host = (dashboard or "").rpartition(":")[0]
    if dashboard_host not in ("", "0.0.0.0", "[::]", "::"):
        # The link printed names the address the dashboard listens on, not the scheduler's.
        settings["distributed.dashboard.link"] = f"{{scheme}}://{dashboard_host}:{{port}}/status"
    return settings
