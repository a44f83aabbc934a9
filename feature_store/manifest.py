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
    return None if text is None else _parse(text)


def _parse(text: str) -> list[IndexRow]:
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
    return _current_text(store) is not None


def _current_text(store: FeatureStore) -> str | None:
    if store.root.attrs.get(INDEX_STATE, {}).get("state", CLEAN) != CLEAN:
        return None
    return store.read_text(INDEX)


def load(store: FeatureStore) -> list[IndexRow]:
    """The index for a reader: as written when current, else rebuilt from the groups (in
    memory; `status --rebuild` or the next run saves it)."""
    text = _current_text(store)
    return from_groups(store) if text is None else _parse(text)


def rebuild(store: FeatureStore) -> list[IndexRow]:
    """Rows from the groups, written back as the index, which is then current."""
    rows = from_groups(store)
    write(store, rows)
    store.set_root_attrs({INDEX_STATE: {"state": CLEAN}})
    return rows


def begin_run(store: FeatureStore, run_id: str) -> list[IndexRow]:
    """A run's starting rows (rebuilt if the index is missing or stale); the index is marked
    as being written until `end_run`, so that a run that dies leaves it marked stale."""
    text = _current_text(store)
    rows = from_groups(store) if text is None else _parse(text)
    store.set_root_attrs({INDEX_STATE: {"state": WRITING, "run_id": run_id}})
    return rows


def end_run(store: FeatureStore, rows: Iterable[IndexRow]) -> None:
    store.check_held()
    write(store, rows)
    store.set_root_attrs({INDEX_STATE: {"state": CLEAN}})
