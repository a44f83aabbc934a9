"""The watchdog's contract, in a child process since it ends the process it runs in."""

import subprocess
import sys

from conftest import ROOT

SCRIPT = """
import threading, time
from pipeline.watchdog import Watchdog
lock = threading.Lock()
lock.acquire()
with Watchdog(0.5, lambda: print("recorded", flush=True)):
    {work}
time.sleep(1.5)  # well past the limit
print("finished", flush=True)
"""


def _child(work: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(work=work)], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_a_thread_stuck_past_the_limit_is_recorded_then_its_process_ends():
    # Blocked in C for good, on a lock this thread already holds.
    result = _child("lock.acquire()")
    assert (result.returncode, result.stdout) == (124, "recorded\n"), result.stderr


def test_work_done_in_time_disarms_it():
    result = _child("lock.release()")
    assert (result.returncode, result.stdout) == (0, "finished\n"), result.stderr
