"""A run's lease on a store in object storage, where no `flock` reaches: one small object,
`<store>/.dfprep.lease`, created only if absent, rewritten only over the version this run last
wrote, and judged expired by the object store's own clock.

S3 (and S3-compatible stores through s3fs) have the conditional writes this needs: `If-None-Match:
*` on create, `If-Match: <ETag>` on refresh, takeover and delete. Other fsspec object stores are
left unlocked, with a warning.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fsspec.asyn import sync

from stages.errors import StoreError, StoreLocked

LEASE = ".dfprep.lease"
DEFAULT_TTL_S = 60.0
# Last-Modified and Date carry whole seconds: a lease is taken over one second after it
# expired by the server's clock, so that truncation never ends a live one early.
_CLOCK_SLACK_S = 1.0
# S3's answers when a conditional write loses: the condition failed, a concurrent conditional
# write to the same key won, or the object it was conditional on is gone.
_LOST = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "409", "412"}
_ACQUIRE_TRIES = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Seen:
    """The lease object as one GET returned it."""

    record: dict
    etag: str
    remaining_s: float  # until another run may take it over, by the server's clock


class ObjectLease:
    """The lease of one run on one store; `object_lease` acquires and releases it."""

    def __init__(self, fs, store_path: str, ttl_s: float = DEFAULT_TTL_S, holder: str = "dfprep run"):
        if not ttl_s > 0:
            raise ValueError(f"a lease's ttl_s must be positive, got {ttl_s!r}")
        self.fs, self.ttl_s = fs, float(ttl_s)
        self.path = f"{store_path.rstrip('/')}/{LEASE}"
        self.url = fs.unstrip_protocol(store_path.rstrip("/"))
        self.bucket, self.key, _ = fs.split_path(self.path)
        self.run_id = uuid.uuid4().hex[:12]
        self._identity = {"holder": holder, "pid": os.getpid(), "host": socket.gethostname(), "run_id": self.run_id,
                          "started": _now().astimezone().isoformat(timespec="seconds"), "ttl_s": self.ttl_s}
        self._etag: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- the run's side --------------------------------------------------------------------

    def acquire(self) -> None:
        """Create the lease, or take over an expired one; StoreLocked naming the holder if
        another run holds it. Starts refreshing it every ttl_s / 3."""
        for _ in range(_ACQUIRE_TRIES):
            try:
                seen = self._get()
                if seen is not None and seen.record.get("run_id") == self.run_id:
                    self._etag = seen.etag  # a write of ours that s3fs retried had landed
                    break
                if seen is not None and seen.remaining_s > 0:
                    raise StoreLocked(_held_message(self.url, seen))
                self._put(if_match=seen.etag if seen else None)
                break
            except OSError as exc:
                if not _lost(exc):
                    raise StoreError(f"store {self.url}: cannot take its lease {LEASE}: {exc}") from exc
                # Another run created or took it over between our read and our write.
        else:
            raise StoreLocked(f"store {self.url}: could not take its lease after {_ACQUIRE_TRIES} tries; another run keeps changing it")
        self._refresher = threading.Thread(target=self._refresh_until_stopped, name=f"dfprep lease {self.url}", daemon=True)
        self._refresher.start()

    def check(self) -> None:
        """Raise StoreLocked if this run lost its lease (it expired unrefreshed and another
        run took it over): call it before committing work that another run may now redo."""
        if self._lost:
            raise StoreLocked(self._lost)

    def release(self) -> None:
        """Stop refreshing and delete the lease, if it is still this run's."""
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
        if self._etag is None or self._lost:
            return
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=self._etag)
        except OSError as exc:
            if not _lost(exc):
                raise
        self._etag = None

    def _refresh_until_stopped(self) -> None:
        last_refresh = time.monotonic()
        while not self._stop.wait(self.ttl_s / 3):
            try:
                taken_by = self._refresh()
            # Any error: a refresher that died of one would let the lease lapse unnoticed.
            except Exception as exc:
                if time.monotonic() - last_refresh > self.ttl_s:
                    self._lose(f"store {self.url}: this run could not refresh its lease for {self.ttl_s:.0f} s "
                               f"(last error: {exc}); another run may have taken the store over")
                    return
                continue
            if taken_by:
                self._lose(f"store {self.url}: this run lost its lease: {taken_by}")
                return
            last_refresh = time.monotonic()

    def _refresh(self) -> str | None:
        """Rewrite the lease over the version this run wrote last; who holds it now if another
        run took it over, else None."""
        try:
            self._put(if_match=self._etag)
            return None
        except OSError as exc:
            if not _lost(exc):
                raise
        seen = self._get()
        if seen is not None and seen.record.get("run_id") == self.run_id:
            # A write of ours that s3fs retried had landed: the lease is still ours.
            self._etag = seen.etag
            return None
        return "it was deleted" if seen is None else f"it is held by {_describe(seen.record)}"

    def _lose(self, message: str) -> None:
        self._lost = message
        log.warning("dfprep: warning: %s", message)

    # -- the object store ------------------------------------------------------------------

    def _put(self, if_match: str | None) -> None:
        now = _now()
        record = {**self._identity, "refreshed": now.isoformat(timespec="milliseconds"),
                  "expires_at": (now + datetime.timedelta(seconds=self.ttl_s)).isoformat(timespec="seconds")}
        condition = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
        response = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=json.dumps(record).encode(),
                                   ContentType="application/json", **condition)
        self._etag = response["ETag"]

    def _get(self) -> _Seen | None:
        """The lease object and how long it has left, or None if there is none."""

        async def get():
            response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            try:
                return response, await response["Body"].read()
            finally:
                response["Body"].close()

        try:
            response, body = sync(self.fs.loop, get)
        except FileNotFoundError:
            return None
        try:
            record = json.loads(body)
            ttl_s = float(record["ttl_s"])
        except (ValueError, TypeError, KeyError):
            # Not ours to parse: treat it as a lease of the default length.
            record, ttl_s = {"holder": f"an unreadable lease object ({len(body)} bytes)"}, DEFAULT_TTL_S
        server_now = _server_date(response) or _now()
        age_s = (server_now - response["LastModified"]).total_seconds()
        return _Seen(record, response["ETag"], ttl_s + _CLOCK_SLACK_S - age_s)


@contextmanager
def object_lease(fs, store_path: str, ttl_s: float = DEFAULT_TTL_S, holder: str = "dfprep run") -> Iterator[ObjectLease | None]:
    """Hold a store on an fsspec object store for the duration of the block; yields the lease
    (None where the store has no conditional writes and is left unlocked, with a warning).
    StoreLocked if another run holds it; on leaving, StoreLocked if this run lost it meanwhile."""
    if not {"s3", "s3a"} & set(_protocols(fs)):
        log.warning("dfprep: warning: store %s is not locked: only S3 stores take a lease; start one run per store URL",
                    fs.unstrip_protocol(store_path))
        yield None
        return
    lease = ObjectLease(fs, store_path, ttl_s, holder)
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()
    lease.check()


def _held_message(url: str, seen: _Seen) -> str:
    expires = (_now() + datetime.timedelta(seconds=seen.remaining_s)).astimezone().isoformat(timespec="seconds")
    return (f"store {url} is in use by {_describe(seen.record)}; its lease expires at {expires} "
            f"(in {max(seen.remaining_s, 0):.0f} s) unless that run renews it; wait for it to finish or use another --store")


def _describe(record: dict) -> str:
    if "pid" not in record:
        return str(record.get("holder", "another run"))
    return f"{record.get('holder', 'dfprep run')} {record['pid']} on {record.get('host', '?')} (run {record.get('run_id', '?')}) since {record.get('started', '?')}"


def _lost(exc: OSError) -> bool:
    """Whether an s3fs error is a conditional write that lost, from botocore's error code,
    which s3fs chains (a missing bucket is FileNotFoundError too, and is no lost race)."""
    error = getattr(exc.__cause__, "response", {}).get("Error", {})
    return error.get("Code") in _LOST


def _server_date(response: dict) -> datetime.datetime | None:
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return email.utils.parsedate_to_datetime(date) if date else None


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
