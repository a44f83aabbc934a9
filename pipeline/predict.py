"""`predict`: new video files through the stages `features` runs, with the profile of the
store the detector was trained on and the limits of `features` (the profile's decode caps, a
time limit a video, worker processes of bounded memory), then scored by the detector."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from feature_store import FeatureStore, video_key
from pipeline.limits import VIDEO_TIMEOUT_S
from pipeline.process import ALL_STAGES, WorkItem, process_video
from pipeline.profiles import Profile
from pipeline.sources.base import VideoRecord
from trainer import checkpoint
from trainer.dataset import StoreClipDataset
from trainer.evaluate import pick_device, score
from trainer.metrics import per_video

UNKNOWN_LABEL = -1


@dataclass(frozen=True)
class Prediction:
    """`p_fake` is the video score (None when the video could not be scored, see `status` and
    `error`); `fake` the call at the threshold chosen on val, when the checkpoint has one."""

    video: str
    status: str
    error: str
    p_fake: float | None
    fake: bool | None
    units: int


def predict(checkpoint_path: str, videos: list[str], device: str = "auto",
            timeout_s: float | None = VIDEO_TIMEOUT_S) -> list[Prediction]:
    state = checkpoint.load(checkpoint_path)
    torch_device = pick_device(device)
    detector = checkpoint.detector_from(state).to(torch_device)
    profile = Profile.from_dict(state["profile"])
    thresholds = state["thresholds"] or {}
    paths = list(dict.fromkeys(videos))
    with tempfile.TemporaryDirectory(prefix="dfprep-predict-") as tmp:
        store_url = str(Path(tmp) / "predict.zarr")
        outcomes = _prepare(paths, store_url, profile, timeout_s)
        dataset = StoreClipDataset(store_url, detector.spec, splits=None)
        p_fake, units = {}, Counter()
        if len(dataset):
            scores = score(detector, dataset, state["recipe"]["batch_size"], torch_device)[0]
            videos_scored = per_video(scores, detector.variant.video_rule, thresholds.get("unit", 0.5))
            p_fake, units = dict(zip(videos_scored.video_ids, videos_scored.p.tolist())), Counter(scores.video_ids.tolist())
    excluded = dict(dataset.excluded)
    return [
        Prediction(
            path, outcomes[path].status, outcomes[path].error or excluded.get(path, ""), p_fake.get(path),
            None if path not in p_fake or "video" not in thresholds else p_fake[path] >= thresholds["video"], units[path],
        )
        for path in paths
    ]


def _prepare(paths: list[str], store_url: str, profile: Profile, timeout_s: float | None) -> dict:
    """Each video through the stages into the store, as `features` runs them: in worker
    processes that a video's time limit or memory ends without ending this one."""
    from pipeline.run import local_client, task_failure

    items = [WorkItem(VideoRecord(path, path, UNKNOWN_LABEL, "predict", "predict"), video_key(path), ALL_STAGES, "predict")
             for path in paths]
    # Made here, as `features` makes its store first: workers creating it side by side collide.
    store = FeatureStore(store_url)
    outcomes = {}
    with local_client(profile, workers=min(len(items), os.cpu_count() or 1), dashboard=None) as client:
        futures = client.map(process_video, items, store_url=store_url, profile=profile, timeout_s=timeout_s,
                             key=[f"video-{item.key}" for item in items], pure=False)
        for item, future in zip(items, futures):
            try:
                outcomes[item.record.path] = future.result()
            except Exception as exc:  # noqa: BLE001 - the task failed, or every worker that ran it died
                outcomes[item.record.path] = task_failure(item, store, profile, exc)
    return outcomes
