"""`features` on a real Dask deployment (issue 8): a `dask scheduler` and two `dask worker`
processes started as a user would start them, one worker killed mid-run; and the options that
choose a cluster, refused in the combinations that make no sense."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import psutil
import pytest
import threadpoolctl
import zarr
from distributed import Client

from conftest import CHEAP, ROOT, assert_same_videos, run_cli, set_options, status_by_id, stored_groups, wait_for
from pipeline.cluster import SINGLE_THREAD_ENV

DASK = str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@contextmanager
def _deployment(folder: Path, scheduler_env: dict | None = None):
    """A scheduler and two single-threaded workers (each under its nanny), as separate
    processes on 127.0.0.1: (scheduler address, its dashboard, the two `dask worker` processes)."""
    address, dashboard = f"tcp://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}/status"
    log = open(folder / "dask.log", "w")
    # Sessions of their own, so that a kill takes a worker's nanny and its process together;
    # none of dfprep's thread settings in their environment, as on a cluster started by others.
    environment = {name: value for name, value in os.environ.items() if name not in SINGLE_THREAD_ENV}
    start = dict(cwd=ROOT, stdout=log, stderr=log, start_new_session=True, env=environment)
    processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                   "--dashboard-address", dashboard.removeprefix("http://").removesuffix("/status")],
                                  **{**start, "env": {**environment, **(scheduler_env or {})}})]
    try:
        for i in range(2):
            processes.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                                               "--no-dashboard", "--name", f"worker-{i}", "--death-timeout", "60"], **start))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, dashboard, processes[1:]
    finally:
        _stop(processes)
        log.close()


@pytest.fixture
def deployment(tmp_path):
    with _deployment(tmp_path) as running:
        yield running


def test_a_worker_of_a_running_cluster_killed_mid_run_leaves_every_video_done_as_a_local_run_makes_it(
        face_corpus, reference_store, deployment, tmp_path):
    address, dashboard, workers = deployment
    store = tmp_path / "store.zarr"
    args = ["features", "--dataset", "folder", "--root", str(face_corpus), "--store", str(store), *set_options(CHEAP), "--scheduler", address]
    log = open(tmp_path / "features.log", "w+")
    run = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: sum(stored_groups(store).values()) >= 3, "three videos stored")
        with Client(address, timeout="30s") as client:
            busy = [worker for worker, keys in client.processing().items() if any(str(k).startswith("video-") for k in keys)]
            assert busy, "the kill came after the run had finished"
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
        # The whole `dask worker` (nanny and process): its video must be redone by the other one.
        victim = next(worker for worker in workers if worker.pid in {p.pid for p in psutil.Process(pid).parents()})
        os.killpg(victim.pid, signal.SIGKILL)
        assert run.wait(timeout=300) == 0
    finally:
        if run.poll() is None:
            run.kill()
        log.seek(0)
        output = log.read()
        log.close()
    assert sum(stored_groups(store).values()) == 20, output[-3000:]
    assert f"\ndashboard: {dashboard}\n" in output and f"\n{'done':<10}{20:>7}\n" in output, output[-3000:]
    assert {row["status"] for row in status_by_id(store).values()} == {"done"}
    assert_same_videos(store, reference_store)

    # The address from the environment, as `dask-jobqueue` or a notebook leaves it.
    rerun = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args[:-2], "--force", "--limit", "2"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "DASK_SCHEDULER_ADDRESS": address})
    assert rerun.returncode == 0 and f"\nprocessed {2:>7}  " in rerun.stdout, rerun.stderr[-3000:]
    assert f"\ndashboard: {dashboard}\n" in rerun.stdout, "the rerun did not run on the cluster of the environment"

    # The worker that ran the videos, started without any thread settings, was kept to one thread.
    with Client(address, timeout="30s") as client:
        for threads in client.run(os.getenv, "OMP_NUM_THREADS").values():
            assert threads == "1"
        for pools in client.run(threadpoolctl.threadpool_info).values():
            assert pools and {pool["num_threads"] for pool in pools} == {1}, pools
        assert set(client.run(cv2.getNumThreads).values()) == {1}
        # A lambda, read in the worker: a bound `zarr.config.get` would travel with this process's config.
        assert set(client.run(lambda: zarr.config.get("threading.max_workers")).values()) == {1}


def test_a_video_whose_workers_keep_dying_ends_failed_worker_died_and_the_run_goes_on(face_corpus, tmp_path):
    root, store = tmp_path / "root", tmp_path / "store.zarr"
    for name in ("real/v00.mp4", "fake/v01.mp4", "real/v02.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(face_corpus / name, root / name)
    # A FIFO nobody writes to: the worker that opens it waits there until it is killed.
    os.mkfifo(root / "fake" / "stuck.mp4")
    # The scheduler's own bound, as a cluster's operator sets it; one task a worker, so that
    # each kill counts against the stuck video alone.
    scheduler_env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1", "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}
    with _deployment(tmp_path, scheduler_env) as (address, _, _):
        args = ["features", "--dataset", "folder", "--root", str(root), "--store", str(store), *set_options(CHEAP), "--scheduler", address]
        run = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        kills = []
        killer = threading.Thread(target=_kill_workers_running, args=(address, "video-fake__stuck-", run, kills), daemon=True)
        killer.start()
        output = run.communicate(timeout=300)[0]
        killer.join()
    assert run.returncode == 0, output[-3000:]
    assert len(kills) == 2, kills
    rows = status_by_id(store)
    assert rows.pop("fake/stuck")["error"].startswith("worker died: "), output[-3000:]
    assert {row["status"] for row in rows.values()} == {"done"} and len(rows) == 3


def _kill_workers_running(address: str, key_prefix: str, run: subprocess.Popen, kills: list) -> None:
    """SIGKILL each worker process seen running a task whose key starts so, until the run ends."""
    with Client(address, timeout="30s") as client:
        while run.poll() is None:
            for worker, keys in client.processing().items():
                if any(str(key).startswith(key_prefix) for key in keys) and worker not in kills:
                    try:
                        pid = client.run(os.getpid, workers=[worker])[worker]
                    except (OSError, KeyError, ValueError):
                        continue
                    os.kill(pid, signal.SIGKILL)
                    kills.append(worker)
            time.sleep(0.1)


@pytest.mark.parametrize("options, message", [
    (["--cluster", "slurm", "--scheduler", "tcp://127.0.0.1:1"], "--cluster slurm starts its own scheduler; it cannot be used with --scheduler"),
    (["--cluster-config", "jobs.yaml"], "--cluster-config needs --cluster slurm|pbs|sge"),
    (["--cluster", "slurm", "--cluster-config", "missing.yaml"], "--cluster-config missing.yaml: cannot read (No such file or directory)"),
    (["--cluster", "pbs", "--cluster-config", "{cfg}"], "unknown PBSCluster option wallclock; allowed: account, cores,"),
    (["--cluster", "sge", "--cluster-config", "{adapt}"], "adapt: needs whole numbers 0 <= minimum_jobs <= maximum_jobs"),
    (["--cluster", "lsf"], "Invalid value for '--cluster': 'lsf' is not one of 'slurm', 'pbs', 'sge'"),
    (["--cluster", "sge", "--cluster-config", "{good}"], "--cluster sge: qsub not found on PATH; run dfprep where jobs can be submitted"),
    (["--cluster", "slurm", "--cluster-config", "{security}"], "security: must be true (TLS with certificates made for the run) or false, found 'maybe'"),
    (["--dashboard-address", "127.0.0.1:8787", "--scheduler", "tcp://127.0.0.1:1"], "--dashboard-address: a running cluster (tcp://127.0.0.1:1) keeps its own"),
    (["--worker-memory", "lots"], "--worker-memory lots: not a size; e.g. 3GB, 2500MB, or 0 for no limit"),
])
def test_cluster_options_that_make_no_sense_are_one_line_and_exit_2(tmp_path, monkeypatch, options, message):
    # No queue's commands: a machine that cannot submit jobs.
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "good.yaml").write_text("cores: 4\nmemory: 8GB\n")
    (tmp_path / "bad.yaml").write_text("cores: 4\nwallclock: '01:00:00'\n")
    (tmp_path / "adapt.yaml").write_text("cores: 4\nadapt: {minimum_jobs: 3, maximum_jobs: 2}\n")
    (tmp_path / "security.yaml").write_text("cores: 4\nsecurity: maybe\n")
    options = [option.format(cfg=tmp_path / "bad.yaml", adapt=tmp_path / "adapt.yaml", good=tmp_path / "good.yaml",
                             security=tmp_path / "security.yaml") for option in options]
    result = run_cli("features", "--dataset", "folder", "--root", str(tmp_path / "none"), "--store", str(tmp_path / "s.zarr"), *options)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_jobqueue_jobs_start_single_threaded_workers_of_this_interpreter(tmp_path, monkeypatch):
    from pipeline.cluster import jobqueue_cluster, jobqueue_spec

    config = tmp_path / "pbs.yaml"
    config.write_text("cores: 4\nmemory: 8GB\njob_script_prologue: ['module load ffmpeg']\nadapt: {maximum_jobs: 3}\n")
    # qsub need only be found, never run: the cluster submits no job before work waits.
    (tmp_path / "qsub").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "qsub").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    spec = jobqueue_spec("pbs", str(config))
    assert (spec.minimum_jobs, spec.maximum_jobs) == (0, 3)
    with jobqueue_cluster(spec) as cluster:
        script = cluster.job_script()
        assert cluster.dashboard_link.startswith("http")
    lines = script.splitlines()
    exports = [f"export {name}={value}" for name, value in SINGLE_THREAD_ENV.items()]
    assert lines[lines.index(exports[0]): lines.index(exports[0]) + len(exports) + 1] == [*exports, "module load ffmpeg"]
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script
    assert "--nthreads 1 " in script and "--nworkers 4 " in script


def _listening(pids) -> set[tuple[str, int]]:
    """(ip, port) of every listening TCP socket of these processes, as the kernel reports them."""
    return {(conn.laddr.ip, conn.laddr.port) for pid in pids for conn in psutil.Process(pid).net_connections("inet")
            if conn.status == psutil.CONN_LISTEN}


WILDCARDS = ("0.0.0.0", "::")


@pytest.mark.parametrize("security", ["", "security: false\n"])
def test_jobqueue_scheduler_speaks_tls_on_one_address_with_its_dashboard_on_localhost(tmp_path, monkeypatch, security):
    from pipeline.cluster import jobqueue_cluster, jobqueue_spec

    (tmp_path / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "slurm.yaml").write_text("cores: 2\nmemory: 4GB\n" + security)
    # Sockets of this test process from before (other tests' clusters) are not the cluster's.
    before = _listening([os.getpid()])
    with jobqueue_cluster(jobqueue_spec("slurm", str(tmp_path / "slurm.yaml"))) as cluster:
        listening = _listening([os.getpid()]) - before
        scheme, _, host_port = cluster.scheduler_address.partition("://")
        host, port = host_port.rsplit(":", 1)
        dashboard_port = cluster.scheduler.http_server.port
        script = cluster.job_script()
        certificates = list((tmp_path / "home").glob(".dfprep-tls-*"))
        with Client(cluster, timeout="20s") as client:
            assert client.scheduler_info()["address"] == cluster.scheduler_address
    assert (host, int(port)) in listening and ("127.0.0.1", dashboard_port) in listening, listening
    assert not [address for address in listening if address[0] in WILDCARDS], listening
    if security:
        assert scheme == "tcp" and not certificates and "--tls-key" not in script
        return
    assert scheme == "tls"
    # The workers' key is in a folder of the user's home only they can enter, gone at the end.
    [folder] = certificates
    assert f"--tls-key {folder}/" in script and "--protocol tls://" in script
    assert not folder.exists()


def test_local_cluster_dashboard_listens_on_localhost_and_workers_have_a_memory_limit(tiny_video, tmp_path):
    from distributed import get_client

    from pipeline.profiles import get_profile
    from pipeline.run import FeaturesRequest, build_features

    for name in ("real", "fake"):
        (tmp_path / "root" / name).mkdir(parents=True)
        os.link(tiny_video, tmp_path / "root" / name / "v.mp4")
    seen = {}

    # Sockets and processes from before (other tests' clusters) are not the run's.
    before, other_processes = _listening([os.getpid()]), set(psutil.Process().children(recursive=True))

    def on_dashboard(link: str) -> None:
        workers = get_client().scheduler_info()["workers"]
        processes = [os.getpid(), *(child.pid for child in set(psutil.Process().children(recursive=True)) - other_processes)]
        seen.update(link=link, memory=[w["memory_limit"] for w in workers.values()], listening=_listening(processes) - before)

    request = FeaturesRequest("folder", str(tmp_path / "root"), str(tmp_path / "store.zarr"),
                              get_profile("default", ["crop.mode=frame", "crop.size=16x16"]), workers=2)
    build_features(request, progress=False, on_dashboard=on_dashboard)
    port = int(seen["link"].split(":")[-1].split("/")[0])
    assert seen["link"] == f"http://127.0.0.1:{port}/status"
    assert ("127.0.0.1", port) in seen["listening"]
    assert not [address for address in seen["listening"] if address[0] in WILDCARDS], seen["listening"]
    assert seen["memory"] == [3_000_000_000] * 2
