"""A video with two people keeps both faces: each track with its own crops and flow in the
store, a Dataset sample per track, and `predict` scoring the video by its most fake-looking
face, which is the swapped one for a detector trained on the demo's fakes."""

import numpy as np
import pytest

import videos
from conftest import run_cli
from feature_store import FeatureStore, schema
from pipeline.predict import predict
from trainer.dataset import ClipSpec, StoreClipDataset
from trainer.loop import TrainRequest, train


@pytest.fixture(scope="module")
def two_face_video(tmp_path_factory):
    """The larger face (track 0) real, the smaller one (track 1) with the demo's manipulation."""
    frames, boxes = videos.two_faces(n=64, swapped=1)
    root = tmp_path_factory.mktemp("two_faces")
    return videos.write(root / "fake" / "two.mp4", frames), boxes


def test_both_faces_are_stored_with_their_own_crops_and_flow(two_face_video, tmp_path):
    path, true_boxes = two_face_video
    store = tmp_path / "store.zarr"
    result = run_cli("features", "--dataset", "folder", "--root", str(path.parent.parent), "--store", str(store),
                     "--set", "sampling.clips=2", "--set", "sampling.clip_length=16", "--set", "crop.size=64x64", "--workers", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    opened = FeatureStore(store, mode="r")
    [key] = opened.keys()
    video = opened.open_video(key)
    assert video.entry.counts.faces == 2
    assert video["frames"].shape[:2] == (2, 32) and video["flow"].shape[:2] == (2, 32)
    assert not np.array_equal(video["frames"][0], video["frames"][1])
    track = video.track()
    frame_index = track["frame_index"][0].astype(int)
    centres = schema.boxes_of(track)[..., :2] / 2 + schema.boxes_of(track)[..., 2:] / 2
    truth = true_boxes[:, frame_index, :2] / 2 + true_boxes[:, frame_index, 2:] / 2
    scale = video.entry.video["frame_scale"]
    assert (np.linalg.norm(centres / scale - truth, axis=-1) < 20).all(), "each track follows its own face"
    # The swapped face's inner face jitters on its head: its flow changes more from frame to frame.
    flow = video["flow"][...].astype(np.float32)
    valid = track["flow_valid"][0].astype(bool)
    change = [np.abs(np.diff(flow[face][valid], axis=0)).mean() for face in (0, 1)]
    assert change[1] > 2 * change[0], change

    samples = StoreClipDataset(str(store), ClipSpec(clip_length=5, flow="raw"), splits=None)
    every = StoreClipDataset(str(store), ClipSpec(clip_length=5, flow="raw", faces="all"), splits=None)
    assert len(every) == 2 * len(samples) and {s[1] for s in every.samples} == {0, 1}
    item = every[[i for i, s in enumerate(every.samples) if s[1] == 1][0]]
    assert item["face"] == 1 and np.array_equal(item["frames"].permute(0, 2, 3, 1).numpy(), video["frames"][1, 0:5])


def test_predict_scores_the_video_by_its_swapped_face(demo_store, two_face_video, tmp_path):
    trained = train(TrainRequest(str(demo_store), "ofcnn", str(tmp_path / "ofcnn"), recipe={"epochs": 4, "batch_size": 8},
                                 inputs=("size=64x64",), progress=False))
    [prediction] = predict(str(trained.out / "best.pt"), [str(two_face_video[0])])
    assert prediction.status == "done" and len(prediction.faces) == 2, prediction
    assert prediction.faces[1] > prediction.faces[0], prediction
    assert prediction.p_fake == max(prediction.faces)
