"""What `features` needs of a cluster beyond the embedded LocalCluster: jobs of an HPC queue
through dask-jobqueue (`--cluster`), and workers of any cluster kept to one thread each."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from distributed import WorkerPlugin

from stages.errors import ConfigError

# Set in every worker before its libraries start their thread pools: one worker process is
# one core, and a BLAS or OpenMP pool a core wide in each would only contend with the others.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# How many workers may die running one video before it is recorded as `failed: worker died`
# (a video that crashes native code, or outgrows a worker's memory, would otherwise take the
# whole cluster down one worker at a time).
ALLOWED_FAILURES = 3
JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}
ADAPT_KEYS = ("minimum_jobs", "maximum_jobs")
# Dashboards bind here unless --dashboard-address says otherwise: their pages list workers,
# folders, logs and exceptions, for anyone who reaches the port.
DASHBOARD_ADDRESS = "127.0.0.1:0"


class SingleThreaded(WorkerPlugin):
    """Keeps every worker of the run to one thread, whoever started it (a `dask worker` of a
    running cluster has none of SINGLE_THREAD_ENV): pools already started are shrunk, and the
    environment is set for libraries loaded later (torch reads it when first imported).
    Zarr compresses on one thread of its own, not a pool of its default size a worker (six on
    two cores), started at the worker's first write."""

    name = "dfprep-single-threaded"

    def setup(self, worker) -> None:
        import cv2
        import zarr
        from threadpoolctl import threadpool_limits

        os.environ.update(SINGLE_THREAD_ENV)
        zarr.config.set({"threading.max_workers": 1})
        threadpool_limits(1)
        cv2.setNumThreads(1)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)


@dataclass(frozen=True)
class JobqueueSpec:
    """A dask-jobqueue cluster: its kind, the file it was read from (named in errors), the
    cluster's keyword arguments, and the bounds of adaptive scaling in jobs."""

    kind: str
    source: str
    options: dict = field(default_factory=dict)
    minimum_jobs: int = 0
    maximum_jobs: int = 1


def jobqueue_spec(kind: str, config_path: str | None) -> JobqueueSpec:
    """Read a `--cluster-config` file: dask-jobqueue's keyword arguments for `kind`, plus an
    `adapt: {minimum_jobs, maximum_jobs}` block. Without a file, dask's own jobqueue
    configuration (~/.config/dask/jobqueue.yaml) supplies them."""
    if kind not in JOBQUEUE_CLUSTERS:
        raise ConfigError(f"--cluster {kind}: unknown; one of {', '.join(JOBQUEUE_CLUSTERS)}")
    if config_path is None:
        _require_submit_command(kind)
        return JobqueueSpec(kind, f"dask's jobqueue.{kind} configuration")
    source = f"--cluster-config {config_path}"
    try:
        options = yaml.safe_load(Path(config_path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(options, dict):
        raise ConfigError(f"{source}: must be a mapping of {JOBQUEUE_CLUSTERS[kind]} options, found {type(options).__name__}")
    adapt = options.pop("adapt", {}) or {}
    if not isinstance(adapt, dict) or set(adapt) - set(ADAPT_KEYS):
        raise ConfigError(f"{source}: adapt: takes only {', '.join(ADAPT_KEYS)}, found {adapt!r}")
    minimum, maximum = adapt.get("minimum_jobs", 0), adapt.get("maximum_jobs", 1)
    if not (isinstance(minimum, int) and isinstance(maximum, int) and 0 <= minimum <= maximum and maximum >= 1):
        raise ConfigError(f"{source}: adapt: needs whole numbers 0 <= minimum_jobs <= maximum_jobs, maximum_jobs >= 1; "
                          f"found {minimum!r}, {maximum!r}")
    unknown = sorted(set(options) - _jobqueue_options(kind))
    if unknown:
        raise ConfigError(f"{source}: unknown {JOBQUEUE_CLUSTERS[kind]} option {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(_jobqueue_options(kind)))}")
    if not isinstance(options.get("security", True), bool):
        raise ConfigError(f"{source}: security: must be true (TLS with certificates made for the run) or false, "
                          f"found {options['security']!r}")
    _require_submit_command(kind)
    return JobqueueSpec(kind, source, options, minimum, maximum)


def _require_submit_command(kind: str) -> None:
    # Without it every submission fails in the background, and the run would wait for ever.
    import dask_jobqueue

    command = getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[kind]).job_cls.submit_command
    if shutil.which(command) is None:
        raise ConfigError(f"--cluster {kind}: {command} not found on PATH; run dfprep where jobs can be submitted (a login node)")


def _jobqueue_options(kind: str) -> set[str]:
    """The keyword arguments a dask-jobqueue cluster of this kind takes: its own and its job's."""
    import inspect

    import dask_jobqueue

    cluster_cls = getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[kind])
    job_cls = cluster_cls.job_cls
    names = set()
    for function in (cluster_cls.__init__, job_cls.__init__, dask_jobqueue.core.Job.__init__):
        names |= {name for name, parameter in inspect.signature(function).parameters.items()
                  if parameter.kind is parameter.POSITIONAL_OR_KEYWORD or parameter.kind is parameter.KEYWORD_ONLY}
    return names - {"self", "job_cls", "loop", "asynchronous", "name", "scheduler", "config_name", "silence_logs", "scheduler_cls"}


def dashboard_address(given: str | None, spec: JobqueueSpec | None) -> str:
    """Where the scheduler's dashboard listens: --dashboard-address, else the cluster file's
    `scheduler_options: {dashboard_address}`, else this machine only."""
    configured = ((spec.options.get("scheduler_options") or {}) if spec else {}).get("dashboard_address")
    return given or configured or DASHBOARD_ADDRESS


@contextmanager
def jobqueue_cluster(spec: JobqueueSpec, dashboard: str = DASHBOARD_ADDRESS) -> Iterator:
    """The queue's cluster, scaling its jobs between the spec's bounds as work waits.

    Anyone who reaches a plain-TCP scheduler can run code in this process, so the scheduler
    speaks TLS with certificates made for the run (`security: false` turns that off), and it
    listens on the one address the jobs are told to reach, never on every interface, unless
    the file names a `host` or `interface`."""
    import dask
    import dask_jobqueue
    from distributed.utils import get_ip

    options = dict(spec.options)
    # One thread a worker process, as on the local cluster, unless the file says otherwise.
    if "cores" in options:
        options.setdefault("processes", options["cores"])
    # The jobs' workers run this interpreter, so they import this very installation.
    options.setdefault("python", sys.executable)
    options["job_script_prologue"] = [f"export {name}={value}" for name, value in SINGLE_THREAD_ENV.items()] + list(
        options.get("job_script_prologue") or ())
    scheduler_options = {**(options.get("scheduler_options") or {}), "dashboard_address": dashboard}
    interface = options.get("interface") or dask.config.get(f"jobqueue.{spec.kind}.interface", None)
    if not ({"host", "interface"} & set(scheduler_options) or interface):
        scheduler_options["host"] = get_ip()
    options["scheduler_options"] = scheduler_options
    with ExitStack() as stack:
        # dask-jobqueue would take `security: false` for a Security object and turn TLS on.
        if options.pop("security", True):
            folder = os.path.expanduser(os.path.expandvars(options.pop("shared_temp_directory", None) or dask.config.get(
                f"jobqueue.{spec.kind}.shared-temp-directory", None) or "~"))
            try:
                private = stack.enter_context(tempfile.TemporaryDirectory(prefix=".dfprep-tls-", dir=folder))
            except OSError as exc:
                raise ConfigError(f"{spec.source}: shared_temp_directory {folder}: cannot write the workers' "
                                  f"certificates there ({exc.strerror or exc})") from exc
            options["security"] = _run_certificates(private)
        try:
            cluster = getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[spec.kind])(silence_logs=logging.ERROR, **options)
        except (TypeError, ValueError, KeyError, OSError) as exc:
            raise ConfigError(f"{spec.source}: not a valid {JOBQUEUE_CLUSTERS[spec.kind]} configuration "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
        with cluster:
            cluster.adapt(minimum_jobs=spec.minimum_jobs, maximum_jobs=spec.maximum_jobs)
            yield cluster


def _run_certificates(folder: str):
    """TLS for every role of the run from one certificate made now: the workers' key and
    certificate written in `folder` (the caller's, removed at the end), which only this user
    can enter and which the jobs' nodes must see (the home directory does on HPC systems)."""
    from distributed.security import Security

    security = Security.temporary()
    for name in ("tls_ca_file", "tls_worker_cert", "tls_worker_key"):
        path = Path(folder) / name.removeprefix("tls_")
        path.touch(mode=0o600)
        path.write_text(getattr(security, name))
        setattr(security, name, str(path))
    return security
