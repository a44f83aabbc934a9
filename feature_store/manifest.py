"""The store's index, `manifest.csv`: one row a video (pandas.read_csv reads it), carrying what
planning, `status`, `export` and the Dataset need, so that each reads this one file instead of
every group. Written atomically; rebuilt from the groups when missing or left stale by a run
that died."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from feature_store.schema import INDEX, INDEX_STATE, IndexRow
from feature_store.store import FeatureStore

CLEAN, WRITING = "clean", "writing"


def read(store: FeatureStore) -> list[IndexRow] | None:
    """The rows as written; None when there is no index."""
    text = store.read_text(INDEX)
    if text is None:
        return None
    return [IndexRow.from_csv(row) for row in csv.DictReader(io.StringIO(text))]


def write(store: FeatureStore, rows: Iterable[IndexRow]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=IndexRow.COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.to_csv() for row in sorted(rows, key=lambda row: row.video_id))
    store.write_text(INDEX, buffer.getvalue())


def from_groups(store: FeatureStore) -> list[IndexRow]:
    """Rows of the complete groups: one listing, then every group's metadata read at once."""
    return [IndexRow(key, entry, generation) for key, (entry, generation) in store.entries(store.keys()).items()]


def is_current(store: FeatureStore) -> bool:
    """Whether the index is there and no run was writing it (a running run, or a dead one)."""
    state = store.root.attrs.get(INDEX_STATE, {})
    return state.get("state", CLEAN) == CLEAN and store.read_text(INDEX) is not None


def load(store: FeatureStore) -> list[IndexRow]:
    """The index for a reader: as written when current, else rebuilt from the groups (in
    memory; `status --rebuild` or the next run saves it)."""
    if is_current(store):
        return read(store) or []
    return from_groups(store)


def rebuild(store: FeatureStore) -> list[IndexRow]:
    """Rows from the groups, written back as the index, which is then current."""
    rows = from_groups(store)
    write(store, rows)
    store.set_root_attrs({INDEX_STATE: {"state": CLEAN}})
    return rows


def begin_run(store: FeatureStore, run_id: str) -> list[IndexRow]:
    """A run's starting rows (rebuilt if the index is missing or stale); the index is marked
    as being written until `end_run`, so that a run that dies leaves it marked stale."""
    rows = read(store) if is_current(store) else None
    if rows is None:
        rows = from_groups(store)
    store.set_root_attrs({INDEX_STATE: {"state": WRITING, "run_id": run_id}})
    return rows


def end_run(store: FeatureStore, rows: Iterable[IndexRow]) -> None:
    write(store, rows)
    store.set_root_attrs({INDEX_STATE: {"state": CLEAN}})
