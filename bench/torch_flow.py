"""The torch flow backend against cv2 on a store's own crops: how far apart the fields are and
what each costs. `python -m bench.torch_flow STORE` prints the figures as JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from feature_store import FeatureStore, schema
from feature_store.schema import Status
from stages import flow, flow_torch


def torch_flow_check(store_path: str | Path) -> dict:
    """Mean end-point error (px, every pixel) of torch's flow against cv2's on the stored pairs
    of every complete video with flow, under the flow parameters that video was made with."""
    import torch

    # One thread, as cv2 gets here and as each pipeline worker has.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _check(FeatureStore(store_path, mode="r"))
    finally:
        torch.set_num_threads(threads)


def _check(store: FeatureStore) -> dict:
    per_video, pairs_total, cv2_s, torch_s = [], 0, 0.0, 0.0
    for key, (entry, _) in store.entries(store.keys()).items():
        flow_config = entry.config.get("flow")
        if entry.status is not Status.DONE or not flow_config:
            continue
        config = flow.FlowConfig.from_dict(flow_config)
        video = store.open_video(key)
        first = np.flatnonzero(video.track()["flow_valid"][0])
        pairs = np.stack([first, first + 1], axis=1)
        gray = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in video[schema.FRAMES][0]])
        if not len(pairs):
            continue
        if not pairs_total:
            flow_torch.farneback(gray, pairs[:1], config)  # first call pays torch's one-off set-up
        started = time.perf_counter()
        expected = [
            cv2.calcOpticalFlowFarneback(gray[a], gray[b], None, config.pyr_scale, config.levels, config.winsize,
                                         config.iterations, config.poly_n, config.poly_sigma, config.flags)
            for a, b in pairs
        ]
        cv2_s += time.perf_counter() - started
        started = time.perf_counter()
        field = flow_torch.farneback(gray, pairs, config)
        torch_s += time.perf_counter() - started
        epe_f = np.linalg.norm(field - np.stack(expected), axis=-1).mean(axis=(1, 2))
        per_video.append(epe_f)
        pairs_total += len(pairs)
    return {
        "pairs": pairs_total,
        "mean_epe_px": float(np.concatenate(per_video).mean()) if per_video else None,
        "max_video_mean_epe_px": float(max(epe.mean() for epe in per_video)) if per_video else None,
        "cv2_s": cv2_s,
        "torch_s": torch_s,
        "torch_device": flow_torch.device().type,
    }


if __name__ == "__main__":
    print(json.dumps(torch_flow_check(sys.argv[1]), indent=1))
