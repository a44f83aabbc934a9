"""A video's stored features on one image: crops, colour-coded flow, the face tracks."""

from __future__ import annotations

import cv2
import numpy as np

from stages.flow import hsv_image

TILE = 128
FOUND, MISSED = (40, 220, 40), (230, 40, 40)
# Found boxes of track k, in order: the main track keeps the single-face green; none is red,
# which marks frames where a track's face was not found.
TRACK_COLOURS = (FOUND, (40, 110, 255), (255, 170, 0), (220, 60, 220), (0, 210, 210), (240, 230, 40))


def contact_sheet(
    frames_thw3: np.ndarray,
    clip_index: np.ndarray,
    flow_fhw2: np.ndarray | None,
    flow_pairs: np.ndarray | None,
    boxes_xyxy: np.ndarray,
    face_found: np.ndarray,
    thumbnail_hw3: np.ndarray,
    thumbnail_scale: float,
    title: str,
    columns: int = 8,
) -> np.ndarray:
    """RGB uint8 image: a row of crops spread over the video, the flow leaving each of them
    (one magnitude scale for the row, so tiles compare), for each face track, and the
    thumbnail of the first frame with the boxes of its clip, each track in its own colour
    (the main track green), red where a face was not found. Arrays may have a leading face
    axis: `frames_thw3` (faces, T, H, W, 3), `flow_fhw2` (faces, F, H, W, 2), `boxes_xyxy`
    (faces, T, 4), `face_found` (faces, T); with several faces, each track's rows start with a
    bar of its colour."""
    boxes_ftx4 = np.reshape(boxes_xyxy, (-1, *np.shape(boxes_xyxy)[-2:]))
    found_ft = np.reshape(face_found, (-1, np.shape(face_found)[-1]))
    crops_f = np.reshape(frames_thw3, (-1, *np.shape(frames_thw3)[-4:]))
    has_flow = flow_fhw2 is not None and len(flow_fhw2) > 0
    flow_f = np.reshape(flow_fhw2, (-1, *np.shape(flow_fhw2)[-4:])) if has_flow else None
    starts = np.asarray(flow_pairs)[:, 0] if has_flow else np.arange(crops_f.shape[1])
    picks = starts[np.unique(np.round(np.linspace(0, len(starts) - 1, min(columns, len(starts)))).astype(int))]
    rows = []
    for face, crops in enumerate(crops_f):
        track_rows = [np.concatenate([_tile(crops[t]) for t in picks], axis=1)]
        if has_flow:
            chosen = [flow_f[face][np.flatnonzero(starts == t)[0]].astype(np.float32) for t in picks]
            top = max(float(np.linalg.norm(field, axis=-1).max()) for field in chosen)
            track_rows.append(np.concatenate([_tile(hsv_image(field, top)) for field in chosen], axis=1))
        if len(crops_f) > 1:
            for row in track_rows:
                row[:, :6] = TRACK_COLOURS[face % len(TRACK_COLOURS)]
        rows += track_rows
    width = rows[0].shape[1]
    first_clip = clip_index == clip_index[0]
    rows.append(_track_panel(thumbnail_hw3, thumbnail_scale, boxes_ftx4[:, first_clip], found_ft[:, first_clip], width))
    sheet = np.concatenate(rows, axis=0)
    header = np.full((28, width, 3), 255, np.uint8)
    cv2.putText(header, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, sheet], axis=0)


def _tile(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = TILE / max(height, width)
    resized = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    tile = np.zeros((TILE, TILE, 3), np.uint8)
    y, x = (TILE - resized.shape[0]) // 2, (TILE - resized.shape[1]) // 2
    tile[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return tile


def _track_panel(thumbnail, scale, boxes_ftx4, found_ft, width) -> np.ndarray:
    image = np.ascontiguousarray(thumbnail.copy())
    for face, (boxes, found) in enumerate(zip(boxes_ftx4, found_ft)):
        colour = TRACK_COLOURS[face % len(TRACK_COLOURS)]
        shown = np.isfinite(boxes).all(axis=1)
        corners = (boxes[shown] * scale).round().astype(int)
        for (x0, y0, x1, y1), ok in zip(corners, found[shown]):
            cv2.rectangle(image, (x0, y0), (x1, y1), colour if ok else MISSED, 1)
        if len(boxes_ftx4) > 1 and len(corners):
            # The track's index on the face axis, above its first box.
            cv2.putText(image, str(face), (corners[0][0], max(10, corners[0][1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    panel = np.full((image.shape[0], width, 3), 255, np.uint8)
    panel[:, : min(width, image.shape[1])] = image[:, :width]
    return panel
