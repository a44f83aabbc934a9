import numpy as np
import pytest
import torch

from trainer.dataset import ClipSpec, StoreClipDataset, batch_loader


@pytest.mark.parametrize(
    "spec, frames_shape, flow_shape, flow_dtype",
    [
        (ClipSpec(clip_length=16, flow="raw"), (16, 3, 256, 256), (15, 2, 256, 256), torch.float32),
        (ClipSpec(clip_length=5, flow="hsv", size=(112, 112)), (5, 3, 112, 112), (4, 3, 112, 112), torch.uint8),
        (ClipSpec(clip_length=8, frame_step=2, size=(224, 224)), (8, 3, 224, 224), None, None),
    ],
)
def test_loader_with_two_workers_yields_the_declared_shapes(demo_store, spec, frames_shape, flow_shape, flow_dtype):
    dataset = StoreClipDataset(str(demo_store), spec, splits=("test",))
    assert len(dataset) > 0 and not dataset.excluded
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = 0
    for batch in loader:
        n = batch["frames"].shape[0]
        assert batch["frames"].shape == (n, *frames_shape) and batch["frames"].dtype == torch.uint8
        assert batch["label"].dtype == torch.int64 and set(batch["label"].tolist()) <= {0, 1}
        if flow_shape:
            assert batch["flow"].shape == (n, *flow_shape) and batch["flow"].dtype == flow_dtype
            assert torch.isfinite(batch["flow"].float()).all()
        else:
            assert "flow" not in batch
        steps = torch.diff(batch["frame_index"], dim=1)
        assert (steps == spec.frame_step).all(), "a clip is consecutive stored frames of one source clip"
        seen += n
    assert seen == len(dataset)
    assert set(dataset.labels.tolist()) == {0, 1}


def test_samples_are_the_stored_pixels(demo_store):
    from feature_store import FeatureStore, video_key

    dataset = StoreClipDataset(str(demo_store), ClipSpec(clip_length=16, flow="raw"), splits=("val",))
    item = dataset[3]
    video = FeatureStore(demo_store, mode="r").open_video(video_key(item["video_id"]))
    track = video.track()
    positions = np.flatnonzero(np.isin(track["frame_index"][0], item["frame_index"].numpy()))
    assert np.array_equal(item["frames"].permute(0, 2, 3, 1).numpy(), video["frames"][0, positions[0] : positions[-1] + 1])
    # Flow is stored at its first frame: a window's 15 flows leave its first 15 frames.
    assert track["flow_valid"][0, positions[:-1]].all() and not track["flow_valid"][0, positions[-1]]
    np.testing.assert_array_equal(item["flow"].permute(0, 2, 3, 1).numpy(), video["flow"][0, positions[:-1]].astype(np.float32))


def test_videos_too_short_for_a_sample_are_listed_not_dropped(demo_store):
    dataset = StoreClipDataset(str(demo_store), ClipSpec(clip_length=20), splits=("test",))
    assert len(dataset) == 0
    assert len(dataset.excluded) == 8 and "needs 20" in dataset.excluded[0][1]


@pytest.mark.parametrize(
    "spec",
    [
        ClipSpec(clip_length=16, flow="raw"),
        ClipSpec(clip_length=5, flow="hsv", size=(112, 112)),
        ClipSpec(clip_length=8, frame_step=2, size=(224, 224)),
        ClipSpec(clip_length=4, groups=2, flow="raw", flow_per_frame=True),
    ],
)
def test_batched_loader_serves_the_batches_of_a_plain_dataloader(demo_store, spec):
    dataset = StoreClipDataset(str(demo_store), spec, splits=None)
    plain = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=0)
    batched = batch_loader(dataset, range(len(dataset)), 3, workers=2)
    pairs = list(zip(plain, batched, strict=True))
    assert len(pairs) == -(-len(dataset) // 3)
    for expected, batch in pairs:
        assert batch.keys() == expected.keys() and batch["video_id"] == expected["video_id"]
        for name in set(expected) - {"video_id"}:
            assert batch[name].dtype == expected[name].dtype and torch.equal(batch[name], expected[name]), name
    # A model views its input's leading axes together, which strided tensors do not allow.
    in_process = dataset[list(range(min(3, len(dataset))))]
    assert all(in_process[name].is_contiguous() and batch[name].is_contiguous() for name in ("frames", "flow") if name in batch)


def test_batched_reads_apply_the_transform_to_each_item(demo_store):
    def flip(item):
        return {**item, "frames": item["frames"].flip(-1)}

    plain = StoreClipDataset(str(demo_store), ClipSpec(clip_length=16), splits=("val",))
    flipped = StoreClipDataset(str(demo_store), ClipSpec(clip_length=16), splits=("val",), transform=flip)
    assert torch.equal(flipped[[0, 2]]["frames"], plain[[0, 2]]["frames"].flip(-1))
