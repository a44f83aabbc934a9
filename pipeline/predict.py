"""`predict`: new video files through the stages `features` runs, with the profile of the
store the detector was trained on and the limits of `features` (the profile's decode caps, a
time limit a video, worker processes of bounded memory), then scored by the detector."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feature_store import FeatureStore, video_key
from feature_store.schema import UNLABELED
from pipeline.limits import VIDEO_TIMEOUT_S
from pipeline.process import ALL_STAGES, WorkItem, process_video
from pipeline.profiles import Profile
from pipeline.sources.base import VideoRecord
from stages.errors import StoreError
from trainer import checkpoint
from trainer.dataset import StoreClipDataset
from trainer.evaluate import pick_device, score
from trainer.metrics import Scores, per_video


@dataclass(frozen=True)
class Prediction:
    """`p_fake` is the video score, the highest of its face tracks' (None when the video could
    not be scored, see `status` and `error`); `fake` the call at the threshold chosen on val,
    when the checkpoint has one; `faces` each track's score, the main track first."""

    video: str
    status: str
    error: str
    p_fake: float | None
    fake: bool | None
    units: int
    faces: list[float]


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
        for outcome in outcomes.values():
            if outcome.store_error:
                raise StoreError(f"predict's scratch store: {outcome.store_error}")
        dataset = StoreClipDataset(store_url, dataclasses.replace(detector.spec, faces="all"), splits=None)
        p_fake, faces, units = {}, {}, Counter()
        if len(dataset):
            scores = score(detector, dataset, state["recipe"]["batch_size"], torch_device)[0]
            p_fake, faces = _max_over_faces(scores, dataset, detector.variant.video_rule, thresholds.get("unit", 0.5))
            units = Counter(scores.video_ids.tolist())
    excluded = dict(dataset.excluded)
    return [
        Prediction(
            path, str(outcomes[path].status), outcomes[path].error or excluded.get(path, ""), p_fake.get(path),
            None if path not in p_fake or "video" not in thresholds else p_fake[path] >= thresholds["video"], units[path],
            faces.get(path, []),
        )
        for path in paths
    ]


def _max_over_faces(scores: Scores, dataset: StoreClipDataset, rule: str, unit_threshold: float) -> tuple[dict, dict]:
    """Each video's score: the highest of its face tracks' scores (the DFDC convention: one
    swapped face makes the video fake), and every track's score. Units come in the
    dataset's order (trainer.evaluate.loader), the same number a sample."""
    faces_of_units = np.repeat([sample[1] for sample in dataset.samples], len(scores.p) // len(dataset))
    keyed = Scores(scores.p, scores.labels, np.array([f"{v}\0{f:06d}" for v, f in zip(scores.video_ids, faces_of_units)]))
    per_face = per_video(keyed, rule, unit_threshold)
    faces: dict[str, list[float]] = {}
    for key, p in zip(per_face.video_ids, per_face.p.tolist()):
        video, face = key.split("\0")
        faces.setdefault(video, []).append(p)  # np.unique sorted the keys: tracks in order
    return {video: max(values) for video, values in faces.items()}, faces


def _prepare(paths: list[str], store_url: str, profile: Profile, timeout_s: float | None) -> dict:
    """Each video through the stages into the store, as `features` runs them: in worker
    processes that a video's time limit or memory ends without ending this one."""
    from pipeline.run import local_client, task_failure

    items = [WorkItem(VideoRecord(path, path, UNLABELED, "predict", "predict"), video_key(path), ALL_STAGES, "predict")
             for path in paths]
    # Made here, as `features` makes its store first: workers creating it side by side collide.
    store = FeatureStore(store_url)
    outcomes = {}
    with local_client(profile, workers=min(len(items), os.cpu_count() or 1)) as client:
        futures = client.map(process_video, items, store_url=store_url, profile=profile, timeout_s=timeout_s,
                             key=[f"video-{item.key}" for item in items], pure=False)
        for item, future in zip(items, futures):
            try:
                outcomes[item.record.path] = future.result()
            except Exception as exc:  # noqa: BLE001 - the task failed, or every worker that ran it died
                outcomes[item.record.path] = task_failure(item, store, profile, exc)
    return outcomes
