"""A per-video time limit that holds even when the video's thread is stuck inside C code."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

# The exit status timeout(1) uses.
EXIT_STATUS = 124


class Watchdog:
    """Calls `on_timeout`, then ends the process, when `seconds` pass before `disarm()`.

    Python cannot interrupt a thread blocked in C (a decoder waiting on a read that never
    returns); only ending its process stops it. On a Dask worker the nanny then starts a new
    worker and the scheduler runs the task again, and that run finds what `on_timeout`
    recorded. `seconds=None` sets no limit."""

    def __init__(self, seconds: float | None, on_timeout: Callable[[], None]):
        self._on_timeout = on_timeout
        self._lock = threading.Lock()
        self._armed = seconds is not None
        self._timer = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._expire)
            self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        if self._timer:
            self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.disarm()

    def disarm(self) -> None:
        """From here on the limit no longer applies; if it has just expired, this never
        returns (the process is ending)."""
        with self._lock:
            self._armed = False
        if self._timer:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if not self._armed:
                return
            try:
                self._on_timeout()
            finally:
                os._exit(EXIT_STATUS)
