import numpy as np
import pytest
import torch

import videos
from trainer.augment import ClipAugment
from trainer.dataset import ClipSpec, StoreClipDataset
from trainer.losses import bce, soft_f1
from trainer.metrics import SHARE_GRID, Scores, binary_metrics, choose_threshold, per_video
from trainer.models.gml import MotionConsistency


def test_groups_are_successive_windows_of_one_video(tiny_store):
    grouped = StoreClipDataset(str(tiny_store), ClipSpec(clip_length=5, groups=2, flow="raw"), ("train",))
    single = StoreClipDataset(str(tiny_store), ClipSpec(clip_length=5, flow="raw"), ("train",))
    assert len(single) == 6 and len(grouped) == 2, "3 windows of 5 in 16 frames: one pair a video"
    item = grouped[0]
    assert item["frames"].shape == (2, 5, 3, 32, 32) and item["flow"].shape == (2, 4, 2, 32, 32)
    assert item["frame_index"].tolist() == [[0, 3, 6, 9, 12], [15, 18, 21, 24, 27]]
    for group in range(2):
        assert torch.equal(item["frames"][group], single[group]["frames"])
        assert torch.equal(item["flow"][group], single[group]["flow"])


def test_flow_per_frame_gives_the_first_frame_the_first_flow(tiny_store):
    plain = StoreClipDataset(str(tiny_store), ClipSpec(clip_length=16, flow="raw"), ("val",))[0]
    per_frame = StoreClipDataset(str(tiny_store), ClipSpec(clip_length=16, flow="raw", flow_per_frame=True), ("val",))[0]
    assert plain["flow"].shape[0] == 15 and per_frame["flow"].shape[0] == 16
    assert torch.equal(per_frame["flow"][0], plain["flow"][0]) and torch.equal(per_frame["flow"][1:], plain["flow"])


def test_clip_augment_transforms_every_frame_alike():
    frame = torch.from_numpy(videos.texture(40, 56).astype(np.uint8)).permute(2, 0, 1)
    clip = frame.expand(6, -1, -1, -1).contiguous()
    changed = 0
    for seed in range(5):
        torch.manual_seed(seed)
        out = ClipAugment()({"frames": clip, "label": 1})["frames"]
        assert out.shape == clip.shape and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[t]) for t in range(6)), "one crop, brightness and flip for the whole clip"
        changed += not torch.equal(out, clip)
    assert changed == 5
    flipped = ClipAugment(min_crop=1.0, brightness=0.0, flip=1.0)({"frames": clip})["frames"]
    assert torch.equal(flipped, clip.flip(-1))


def test_motion_paths_vanish_on_a_still_clip_when_k_predicts_the_previous_frame():
    torch.manual_seed(0)
    block = MotionConsistency(channels=32, frames=4).eval()
    with torch.no_grad():
        block.kernel.weight.zero_()
        block.kernel.weight[:, 0, 1, 1] = 1  # K = identity: F_M(t) = F_D(t) - F_D(t-1)
        still = torch.randn(1, 32, 6, 6).expand(8, -1, -1, -1).contiguous()  # 2 clips of 4 equal frames
        clip = still.view(2, 4, 32, 6, 6).transpose(1, 2)
        spatio_temporal = block.spatial(block.temporal(clip)).transpose(1, 2).reshape(8, 32, 6, 6)
        assert torch.allclose(block(still), spatio_temporal, atol=1e-6)
        moving = still + torch.randn(8, 32, 6, 6)
        clip = moving.view(2, 4, 32, 6, 6).transpose(1, 2)
        spatio_temporal = block.spatial(block.temporal(clip)).transpose(1, 2).reshape(8, 32, 6, 6)
        assert not torch.allclose(block(moving), spatio_temporal, atol=1e-3)


def test_thresholds_metrics_and_video_scores_have_known_answers():
    p, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    # Midpoints 0.225, 0.375 and 0.6: 0.225 and 0.6 both give balanced accuracy 0.75; 0.6 is nearer 0.5.
    assert choose_threshold(p, labels) == pytest.approx(0.6)
    assert choose_threshold(p, labels, SHARE_GRID) == 0.5  # 0.3, 0.5, 0.6, 0.7 tie at 0.75
    metrics = binary_metrics(p, labels, 0.375)
    assert metrics["accuracy"] == 0.5 and metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    assert metrics["auc"] == 0.75 and metrics["f1"] == 0.5
    units = Scores(np.array([0.9, 0.2, 0.7, 0.1, 0.3]), np.array([1, 1, 1, 0, 0]), np.array(["b", "b", "b", "a", "a"]))
    mean = per_video(units, "mean", 0.5)
    share = per_video(units, "share", 0.5)
    assert mean.video_ids.tolist() == ["a", "b"] and mean.labels.tolist() == [0, 1]
    np.testing.assert_allclose(mean.p, [0.2, 0.6])
    np.testing.assert_allclose(share.p, [0.0, 2 / 3])


def test_soft_f1_is_f1_on_hard_decisions():
    labels = torch.tensor([1, 1, 0, 0, 1])
    assert soft_f1(torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0]), labels).item() == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert soft_f1(labels.float(), labels).item() > 0.999


def test_class_weights_scale_each_units_loss():
    logits, labels = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([0, 1, 1])
    per_unit = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    weights = torch.tensor([2.0, 0.5])
    expected = (2.0 * per_unit[0] + 0.5 * per_unit[1] + 0.5 * per_unit[2]) / 3.0
    assert bce({"logits": logits}, labels, weights).item() == pytest.approx(expected.item())
