"""The manifest: one CSV row a video (pandas.read_csv reads it), rebuilt from the groups at will."""

from __future__ import annotations

import csv
import io
import json

from feature_store.store import FeatureStore

MANIFEST = "manifest.csv"
COLUMNS = (
    "video_id", "key", "label", "split", "dataset", "status", "error",
    "n_frames", "n_flows", "face_found", "profile", "source_path", "updated_at", "extra",
)


def row_from_attrs(key: str, attrs: dict) -> dict:
    counts = attrs.get("counts", {})
    return {
        "video_id": attrs["video_id"],
        "key": key,
        "label": attrs["label"],
        "split": attrs["split"],
        "dataset": attrs["dataset"],
        "status": attrs["status"],
        "error": attrs.get("error") or "",
        "n_frames": counts.get("frames", 0),
        "n_flows": counts.get("flows", 0),
        "face_found": counts.get("face_found", 0),
        "profile": attrs.get("profile", ""),
        "source_path": attrs.get("source_path", ""),
        "updated_at": attrs.get("updated_at", ""),
        "extra": attrs.get("extra", {}),
    }


def write(store: FeatureStore, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda row: row["video_id"]):
        writer.writerow({**row, "extra": json.dumps(row["extra"], sort_keys=True)})
    store.write_text(MANIFEST, buffer.getvalue())


def read(store: FeatureStore) -> list[dict] | None:
    """Rows as written, with label and counts as ints; None when there is no manifest."""
    text = store.read_text(MANIFEST)
    if text is None:
        return None
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        for column in ("label", "n_frames", "n_flows", "face_found"):
            row[column] = int(row[column])
        row["extra"] = json.loads(row["extra"])
    return rows


def rebuild(store: FeatureStore) -> list[dict]:
    """Rows from the complete groups alone, written back as the manifest."""
    rows = [row_from_attrs(key, attrs) for key, attrs in store.complete_attrs().items()]
    write(store, rows)
    return read(store)
