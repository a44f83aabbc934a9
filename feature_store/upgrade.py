"""`dfprep store upgrade`: a format-1 store (dfprep before the format was versioned) rewritten
in place as format 2. Format 1 kept each per-frame value in an array of its own, flow as
(flows, H, W, 2) with a `flow_pairs` array, the thumbnail as an array, and coded crops with
the `dfprep.row_delta` filter, which only dfprep could read; it is registered here, for
reading, and nowhere else."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import cv2
import numpy as np
from zarr.abc.codec import ArrayArrayCodec
from zarr.core.array_spec import ArraySpec
from zarr.core.buffer import NDBuffer
from zarr.core.common import JSON, parse_named_configuration
from zarr.registry import register_codec

from feature_store import manifest, schema
from feature_store.schema import COMPLETE, FORMAT, FORMAT_ATTR, VIDEOS, Counts, Status, VideoEntry
from feature_store.store import FeatureStore
from stages.errors import StoreError

ROW_DELTA = "dfprep.row_delta"


@dataclass(frozen=True)
class _RowDelta(ArrayArrayCodec):
    """Format 1's filter: each image row stored as its difference from the row above."""

    is_fixed_size = True
    axis: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> _RowDelta:
        _, configuration = parse_named_configuration(data, ROW_DELTA)
        return cls(**configuration)

    def to_dict(self) -> dict[str, JSON]:
        return {"name": ROW_DELTA, "configuration": {"axis": self.axis}}

    def resolve_metadata(self, chunk_spec: ArraySpec) -> ArraySpec:
        return chunk_spec

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        return input_byte_length

    async def _decode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> NDBuffer:
        rows = np.array(chunk_array.as_ndarray_like(), order="C")
        np.cumsum(rows, axis=self.axis, dtype=rows.dtype, out=rows)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(rows)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> NDBuffer:
        raise StoreError("format 1 is read only: dfprep writes format 2")


register_codec(ROW_DELTA, _RowDelta)


@dataclass(frozen=True)
class UpgradeSummary:
    videos: int
    upgraded: int
    dropped: int  # groups of format 1 that were never complete (invisible to every reader)


def upgrade(url: str) -> UpgradeSummary:
    """Rewrite every format-1 video group as format 2, then mark the store format 2 and
    rebuild its index. A killed upgrade resumes: groups already rewritten are kept."""
    store = FeatureStore(url, mode="a", any_format=True)
    if store.format == FORMAT:
        return UpgradeSummary(len(store.keys()), 0, 0)
    upgraded = dropped = 0
    with store.lock():
        keys = store.keys()
        for key in keys:
            group = store.root[f"{VIDEOS}/{key}"]
            attrs = group.attrs.asdict()
            if isinstance(attrs.get(COMPLETE), dict):
                continue  # rewritten by an earlier, interrupted upgrade
            if attrs.get(COMPLETE) is not True:
                del store.root[VIDEOS][key]
                dropped += 1
                continue
            entry, arrays = _format_2(attrs, {name: array[...] for name, array in group.arrays()})
            store.write_video(key, entry, arrays, chunk_frames=int(entry.config["sampling"]["clip_length"]))
            upgraded += 1
        store.set_root_attrs({FORMAT_ATTR: FORMAT})
        manifest.rebuild(store)
    return UpgradeSummary(len(keys) - dropped, upgraded, dropped)


def _format_2(attrs: dict, arrays: dict[str, np.ndarray]) -> tuple[VideoEntry, dict]:
    """A format-1 group's attributes and arrays in format 2's layout; values unchanged."""
    video = dict(attrs.get("video", {}))
    thumbnail_scale = video.pop("thumbnail_scale", None)
    counts = attrs.get("counts", {})
    entry = VideoEntry.from_attrs({**attrs, "counts": {}, "video": video})
    if entry.status is not Status.DONE:
        return entry, {}
    crops = entry.config["crops"]
    per_face = {schema.frames_name(i, crop["mode"]): crop["mode"] != "frame" for i, crop in enumerate(crops)}
    clip_index = arrays["clip_index"]
    n = len(clip_index)
    named = {name: schema.images_array(name, arrays[name][None] if per_face[name] else arrays[name], per_face[name])
             for name in per_face}
    if "flow" in arrays:
        flow = schema.frame_aligned_flow(arrays["flow"], arrays["flow_pairs"], n)
        named[schema.FLOW] = schema.flow_array(flow[None] if per_face[schema.FRAMES] else flow, per_face[schema.FRAMES])
    affines = {name: arrays["crop_affine" + name.removeprefix(schema.FRAMES)][None] for name in per_face}
    table, fields = schema.track_table(arrays["frame_index"], clip_index, arrays["timestamps_s"], arrays["face_found"][None],
                                       arrays["boxes"][None], arrays["landmarks"][None], affines)
    named[schema.TRACK] = schema.track_array(table, fields)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(arrays["thumbnail"], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    entry = entry.replace(
        clip_lengths=tuple(int(c) for c in np.bincount(clip_index)),
        counts=Counts(counts.get("frames", n), counts.get("flows", 0), counts.get("face_found", 0), int(any(per_face.values()))),
        thumbnail={"jpeg_base64": base64.b64encode(jpeg.tobytes()).decode("ascii"), "scale": thumbnail_scale},
    )
    return entry, named
