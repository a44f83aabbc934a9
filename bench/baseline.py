"""The reference baseline: the common single-machine practice, written from its description
(DeepfakeBench's preprocess.py and its kin), so that both sides run in the same benchmark.

Per video: cv2.VideoCapture reads every frame; for 32 evenly spaced frames: BGR to RGB, dlib
HOG on the full frame with upsample 1, the largest face, 68 landmarks, a 5-point similarity
alignment to 256x256 with a 1.3 margin, HOG and landmarks again on the aligned crop, one PNG
and one .npy per frame. The detector and predictor are loaded per video; videos run on a
thread pool of one thread per core. The flow variant takes 4 clips of 8 consecutive frames
instead and adds Farneback between consecutive crops, one .npy per video.

Run as a script so that its peak memory is its own: `python -m bench.baseline OUT VIDEO...`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import dlib
import numpy as np
from skimage.transform import SimilarityTransform

from stages.faces import ALIGN_TEMPLATE_112, model_path

SIZE, MARGIN = 256, 1.3


def process(video: Path, out: Path, with_flow: bool) -> dict:
    started = time.perf_counter()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    n = len(frames)
    if with_flow:
        starts = np.linspace(0, n - 8, 4).round().astype(int)
        wanted = np.concatenate([np.arange(s, s + 8) for s in starts])
    else:
        wanted = np.linspace(0, n - 1, 32).round().astype(int)
    template = ((ALIGN_TEMPLATE_112 / 112 - 0.5) / MARGIN + 0.5) * SIZE
    folder = out / video.stem
    folder.mkdir(parents=True, exist_ok=True)
    found, crops = [], []
    for index in wanted:
        rgb = cv2.cvtColor(frames[index], cv2.COLOR_BGR2RGB)
        faces = detector(rgb, 1)
        found.append(len(faces) > 0)
        if not faces:
            continue
        face = max(faces, key=lambda r: r.width() * r.height())
        points = np.array([(p.x, p.y) for p in predictor(rgb, face).parts()], np.float64)
        five = np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])
        matrix = SimilarityTransform.from_estimate(five, template).params[:2]
        crop = cv2.warpAffine(rgb, matrix, (SIZE, SIZE))
        again = detector(crop, 1)
        rect = again[0] if again else dlib.rectangle(0, 0, SIZE - 1, SIZE - 1)
        landmarks = np.array([(p.x, p.y) for p in predictor(crop, rect).parts()], np.float32)
        cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        np.save(folder / f"{index:04d}.npy", landmarks)
        crops.append(crop)
    flows = []
    if with_flow and crops:
        grays = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops]
        flows = [cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
                 for clip in range(0, len(grays), 8) for a, b in zip(grays[clip:clip + 7], grays[clip + 1:clip + 8])]
        np.save(folder / "flow.npy", np.stack(flows))
    return {"video": video.name, "frames": n, "sampled": len(wanted), "found": int(sum(found)),
            "crops": len(crops), "flows": len(flows),
            "found_mask": [bool(f) for f in found], "seconds": time.perf_counter() - started}


def run(out: Path, videos: list[Path], with_flow: bool, workers: int) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda v: process(v, out, with_flow), videos))
    return {"wall_s": time.perf_counter() - started, "videos": results,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    flow = sys.argv[1] == "--flow"
    args = sys.argv[2:] if flow else sys.argv[1:]
    print(json.dumps(run(Path(args[0]), [Path(a) for a in args[1:]], flow, workers=2)))
