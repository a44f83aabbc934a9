"""A run's lease on an S3 store (issue 16), against moto's S3 server: created only if absent,
refused to a second run while refreshed, taken over once expired by exactly one of several
runs, noticed by a run that lost it, deleted on release. Holders that die or stall are real
processes, killed or stopped."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import ROOT
from feature_store.lease import LEASE, ObjectLease, object_lease
from stages.errors import StoreError, StoreLocked

s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "dfprep-lease"

# A run in another process that holds the lease until a line arrives on stdin, then says how
# leaving went.
HOLDER = """
import sys, s3fs
from feature_store.lease import object_lease
fs = s3fs.S3FileSystem(endpoint_url=sys.argv[1], key="testing", secret="testing", client_kwargs={"region_name": "us-east-1"})
try:
    with object_lease(fs, sys.argv[2], ttl_s=float(sys.argv[3])) as lease:
        print("held", lease.run_id, flush=True)
        sys.stdin.readline()
    print("released", flush=True)
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
"""


@pytest.fixture()
def s3(s3_endpoint):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing", client_kwargs={"region_name": "us-east-1"},
                           skip_instance_cache=True)
    if not fs.exists(BUCKET):
        fs.call_s3("create_bucket", Bucket=BUCKET)
    return fs


@pytest.fixture()
def store_path():
    return f"{BUCKET}/{uuid.uuid4().hex[:8]}.zarr"


def start_holder(s3_endpoint, store_path, ttl_s) -> tuple[subprocess.Popen, str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, s3_endpoint, store_path, str(ttl_s)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    line = holder.stdout.readline()
    assert line.startswith("held "), line + holder.stdout.read()
    return holder, line.split()[1]


def test_a_second_run_is_refused_while_the_first_holds_the_lease_and_release_deletes_it(s3, store_path):
    with object_lease(s3, store_path, ttl_s=60) as first:
        record = json.loads(s3.cat_file(f"{store_path}/{LEASE}"))
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["run_id"] == first.run_id
        message = rf"store s3://{store_path} is in use by dfprep run {os.getpid()} on {re.escape(socket.gethostname())} " \
                  rf"\(run {first.run_id}\) since .*; its lease expires at .* \(in 6\d s\) unless that run renews it"
        with pytest.raises(StoreLocked, match=message):
            with object_lease(s3, store_path, ttl_s=60):
                pass
        first.check()
    assert not s3.exists(f"{store_path}/{LEASE}")
    with object_lease(s3, store_path, ttl_s=60) as second:
        assert json.loads(s3.cat_file(f"{store_path}/{LEASE}"))["run_id"] == second.run_id


def test_the_lease_of_a_killed_run_is_taken_over_once_it_expires(s3_endpoint, s3, store_path):
    holder, dead_run = start_holder(s3_endpoint, store_path, ttl_s=2)
    holder.kill()
    holder.wait()
    killed = time.monotonic()
    with pytest.raises(StoreLocked, match=f"run {dead_run}"):
        ObjectLease(s3, store_path, ttl_s=2).acquire()
    while True:
        lease = ObjectLease(s3, store_path, ttl_s=2)
        try:
            lease.acquire()
            break
        except StoreLocked:
            assert time.monotonic() - killed < 10, "the dead run's lease never expired"
            time.sleep(0.2)
    # Its last refresh was at most ttl / 3 before the kill.
    assert time.monotonic() - killed > 2 * 2 / 3
    assert json.loads(s3.cat_file(f"{store_path}/{LEASE}"))["run_id"] == lease.run_id
    lease.release()


def test_a_refreshed_lease_outlives_its_ttl(s3, store_path):
    with object_lease(s3, store_path, ttl_s=1) as lease:
        # Unrefreshed, it would have expired by now even to a server clock of whole seconds.
        time.sleep(3.2)
        with pytest.raises(StoreLocked, match=f"run {lease.run_id}"):
            ObjectLease(s3, store_path, ttl_s=1).acquire()
        lease.check()


def test_racing_takeovers_of_an_expired_lease_have_exactly_one_winner(s3, store_path):
    s3.pipe_file(f"{store_path}/{LEASE}", json.dumps({"holder": "a dead run", "pid": 1, "host": "gone", "ttl_s": 0}).encode())
    time.sleep(2.1)  # the server's clock has whole seconds
    racers = [ObjectLease(s3, store_path, ttl_s=30) for _ in range(6)]
    start, outcomes = threading.Barrier(len(racers)), {}

    def race(lease):
        start.wait()
        try:
            lease.acquire()
            outcomes[lease.run_id] = "won"
        except StoreLocked as exc:
            outcomes[lease.run_id] = str(exc)

    threads = [threading.Thread(target=race, args=(lease,)) for lease in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [run for run, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    assert json.loads(s3.cat_file(f"{store_path}/{LEASE}"))["run_id"] == winners[0]
    assert all(f"(run {winners[0]})" in outcome for outcome in outcomes.values() if outcome != "won"), outcomes
    for lease in racers:
        lease.release()
    assert not s3.exists(f"{store_path}/{LEASE}")


def test_a_stalled_run_whose_lease_was_taken_over_notices_and_leaves_it_alone(s3_endpoint, s3, store_path):
    holder, stalled_run = start_holder(s3_endpoint, store_path, ttl_s=1)
    holder.send_signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                taker = ObjectLease(s3, store_path, ttl_s=30)
                taker.acquire()
                break
            except StoreLocked:
                assert time.monotonic() < deadline, "the stalled run's lease never expired"
                time.sleep(0.2)
    finally:
        holder.send_signal(signal.SIGCONT)
    time.sleep(1)  # a refresh of the stalled run's is due every ttl / 3
    out, _ = holder.communicate("\n", timeout=30)
    lost = f"store s3://{store_path}: this run lost its lease: it is held by dfprep run {os.getpid()} on {socket.gethostname()} (run {taker.run_id})"
    warning, leaving = out.splitlines()
    assert warning.startswith(f"dfprep: warning: {lost}") and leaving.startswith(f"StoreLocked {lost}"), out
    assert json.loads(s3.cat_file(f"{store_path}/{LEASE}"))["run_id"] == taker.run_id, "the stalled run deleted the new lease"
    taker.release()


def test_a_store_without_conditional_writes_is_left_unlocked_with_a_warning(caplog):
    import fsspec

    with object_lease(fsspec.filesystem("memory"), "/unlockable.zarr") as lease:
        assert lease is None
    assert "store memory:///unlockable.zarr is not locked: only S3 stores take a lease" in caplog.text


def test_a_lease_in_a_missing_bucket_is_a_store_error_naming_the_store(s3):
    with pytest.raises(StoreError, match=r"store s3://dfprep-no-such-bucket/s.zarr: cannot take its lease \.dfprep\.lease: "):
        with object_lease(s3, "dfprep-no-such-bucket/s.zarr"):
            pass
