"""How much of the demo fakes' motion a store's flow shows, before any detector is trained.

The demo corpus's fakes differ from its reals only in the inner face's motion relative to the
head (`pipeline/sources/demo.py`). Per video, this measures that directly: in each stored flow,
the median flow of the inner face (the middle 40% of the face box) minus the median flow of the
head around it (the box grown to 120%), its length averaged over the video's flows. A store
whose flow shows the fakes separates the classes on this number; a detector reading that store
can at best learn the same.

    python -m bench.flow_signal stores/demo-twostream.zarr
"""

from __future__ import annotations

import sys

import numpy as np

from feature_store import FeatureStore, manifest, schema
from stages import faces
from trainer.metrics import Scores, auc_or_nan

INNER, AROUND = 0.2, 0.6  # half-sides, as fractions of the box's width and height


def relative_motion(flow: np.ndarray, boxes: np.ndarray) -> float:
    """Mean length of (inner face's median flow - head's median flow) over the flows (T, H, W, 2),
    with each frame's face box (T, 4: x1, y1, x2, y2) in the flow's pixels."""
    lengths = []
    for field, (x1, y1, x2, y2) in zip(flow, boxes):
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1

        def median(half: float) -> np.ndarray:
            rows = slice(max(0, int(cy - h * half)), max(0, int(cy + h * half)))
            cols = slice(max(0, int(cx - w * half)), max(0, int(cx + w * half)))
            return np.median(field[rows, cols].reshape(-1, 2), axis=0)

        lengths.append(np.linalg.norm(median(INNER) - median(AROUND)))
    return float(np.mean(lengths))


def video_signal(video) -> float:
    """`relative_motion` of a stored video's first face, its box mapped into the flow's crop
    (flow is computed on the `frames` array, whose affine maps source pixels to crop pixels)."""
    track = video.track()
    flow = np.asarray(video[schema.FLOW][:], np.float32)
    flow = flow[0] if flow.ndim == 5 else flow
    affine = np.stack([track[name][0] for name in schema.affine_fields(schema.FRAMES)], axis=-1).reshape(-1, 2, 3)
    corners = schema.boxes_of(track)[0].reshape(-1, 2, 2)
    boxes = faces.landmarks_in_crop(corners, affine).reshape(-1, 4)
    # Flow is stored at its first frame; a clip's last frame has none (all zeros).
    return relative_motion(flow[:-1], boxes[:-1])


def main(store_url: str) -> None:
    store = FeatureStore(store_url, mode="r")
    rows = sorted(manifest.load(store), key=lambda row: row.video_id)
    signal = np.array([video_signal(store.open_video(row.key, row.generation)) for row in rows])
    labels = np.array([row.entry.label for row in rows])
    splits = np.array([row.entry.split for row in rows])
    print(f"{store_url}: |inner face - head| median flow, px of the stored flow, mean over each video's flows")
    for split in ("train", "val", "test"):
        chosen = splits == split
        scores = Scores(signal[chosen], labels[chosen], np.array([row.video_id for row in rows])[chosen])
        real, fake = signal[chosen & (labels == 0)], signal[chosen & (labels == 1)]
        print(f"  {split:<5} real {real.mean():.2f} (max {real.max():.2f}), fake {fake.mean():.2f} (min {fake.min():.2f}), "
              f"AUC {auc_or_nan(scores):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
