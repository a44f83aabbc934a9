"""The architecture, input and recipe facts each detector's paper states (docs/DETECTORS.md),
checked on the registered variants. Shapes are computed on PyTorch's `meta` device: no
arithmetic, so full-size networks at the papers' input sizes cost a fraction of a second."""

import math

import numpy as np
import pytest
import torch

from pipeline.profiles import get_profile
from stages.decode import sample_clips
from stores import write_tiny_store
from trainer.dataset import ClipSpec, StoreClipDataset
from trainer.losses import LOSSES
from trainer.registry import VARIANTS

# The Stanford report weighs classes; no other paper does.
CLASS_WEIGHTED = {"frame_cnn", "twostream_frame", "twostream_video", "cnn_rnn", "cnn3d_video"}


def build(name: str, spec: ClipSpec | None = None) -> torch.nn.Module:
    with torch.device("meta"):
        return VARIANTS[name].build(spec or VARIANTS[name].spec)


def outputs_of(module: torch.nn.Module, run) -> list:
    """What `module` returned each time it ran during `run()`."""
    seen = []
    handle = module.register_forward_hook(lambda _, args, out: seen.append((args, out)))
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("name", ["r3d50", "r3d101"])
def test_3d_resnets_have_the_max_pooled_stem_and_7x7_conv5_maps_at_224_px(name):
    net = build(name)
    clip = torch.empty(1, 16, 3, 224, 224, device="meta")
    layer4 = net.net.layer4
    ((_, conv5),) = outputs_of(layer4, lambda: net(clip))
    assert conv5.shape[1:] == (2048, 1, 7, 7)
    stem = net.net.conv1
    assert stem.kernel_size == (7, 7, 7) and stem.stride == (1, 2, 2)
    assert isinstance(net.net.maxpool, torch.nn.MaxPool3d) and net.net.maxpool.stride == 2
    blocks = [len(getattr(net.net, f"layer{i}")) for i in range(1, 5)]
    assert blocks == {"r3d50": [3, 4, 6, 3], "r3d101": [3, 4, 23, 3]}[name]


def test_gml_anomaly_branch_reads_block_5_and_its_clue_map_has_that_blocks_size():
    net = build("gml")
    frames = torch.empty(2, 8, 3, 224, 224, device="meta")
    block5 = net.backbone.block5
    seen_block5, seen_branch = [], []
    hooks = [block5.register_forward_hook(lambda _, args, out: seen_block5.append(out)),
             net.branch.register_forward_hook(lambda _, args, out: seen_branch.append(args[0]))]
    output = net(frames)
    for hook in hooks:
        hook.remove()
    (f_out,), (branch_input,) = seen_block5, seen_branch
    assert branch_input is f_out, "the branch reads block 5's output"
    assert f_out.shape == (16, 728, 14, 14)
    assert output["clue"].shape == f_out.shape, "F* has the size of F_out"


@pytest.mark.parametrize("frames", [1, 8])
def test_gml_l1_term_is_a_per_sample_norm_on_real_clips_only(frames):
    channels, side = 728, 2
    clue = torch.zeros(2 * frames, channels, side, side)
    clue[:frames] = 0.5  # the real clip's maps
    clue[frames:] = 3.0  # the fake clip's maps: not penalised
    output = {"logits": torch.zeros(2, 2), "branch_logits": torch.zeros(2, 2), "clue": clue}
    labels = torch.tensor([0, 1])
    cross_entropies = 2 * math.log(2)
    loss = LOSSES["gml"][0](output, labels, torch.ones(2))
    assert loss.item() == pytest.approx(cross_entropies + 0.5 * frames * channels * side * side, rel=1e-5)


def test_gml_trains_for_the_papers_150k_iterations():
    recipe = VARIANTS["gml"].recipe
    assert recipe.iterations == 150_000 and recipe.batch_size == 16 and recipe.optimizer == "sgd"


def test_two_stream_temporal_stream_flattens_its_25x46x64_map_per_flow():
    net = build("twostream_video")
    frames = torch.empty(1, 16, 3, 108, 192, device="meta")
    flow = torch.empty(1, 16, 2, 108, 192, device="meta")
    ((_, flow_map),) = outputs_of(net.flow_net, lambda: net(frames, flow))
    assert flow_map.shape == (16, 64, 25, 46)
    first = net.flow_stream[0]
    assert isinstance(first, torch.nn.Linear) and first.in_features == 64 * 25 * 46 == 73_600 and first.out_features == 128


def test_two_stream_temporal_stream_is_blind_to_a_fixed_flow_scale():
    # Why the registry feeds flow in pixels: scaling it first would change nothing.
    from trainer.models.backbones import flow_convnet

    torch.manual_seed(0)
    net, flow = flow_convnet(), torch.randn(4, 2, 36, 64)
    assert torch.allclose(net(flow), net(flow / 2.26), atol=1e-4)


def test_two_stream_per_frame_trains_on_shuffled_frame_flow_pairs_in_batches_of_16(tiny_store):
    variant = VARIANTS["twostream_frame"]
    assert variant.recipe.batch_size == 16
    spec = variant.spec.with_text_overrides("input", {"size": "32x32"})
    pairs = StoreClipDataset(str(tiny_store), spec, ("train",))
    video = StoreClipDataset(str(tiny_store), ClipSpec(clip_length=16, flow="raw", flow_per_frame=True), ("train",))
    assert len(pairs) == 2 * 16, "each frame with its flow is a sample"
    whole = video[0]
    for t in range(16):
        pair = pairs[t]
        assert pair["frames"].shape == (1, 3, 32, 32) and pair["flow"].shape == (1, 2, 32, 32)
        assert torch.equal(pair["frames"][0], whole["frames"][t]) and torch.equal(pair["flow"][0], whole["flow"][t])


def test_ofcnn_groups_are_10_consecutive_frames_of_one_stored_clip(tmp_path):
    profile = get_profile("ofcnn", ["crop.size=32x32"])
    sampling = profile.sampling
    store = write_tiny_store(tmp_path / "s.zarr", profile, frames=sampling.clip_length, clips=sampling.clips, size=(32, 32),
                             splits={"train": 1})
    dataset = StoreClipDataset(str(store), VARIANTS["ofcnn"].spec.with_text_overrides("input", {"size": "32x32"}), ("train",))
    assert len(dataset) == 2 * sampling.clips
    stored_index = np.arange(sampling.clips * sampling.clip_length) * 3  # the tiny store's frame_index
    clip_of = dict(zip(stored_index.tolist(), np.repeat(np.arange(sampling.clips), sampling.clip_length).tolist()))
    for i in range(len(dataset)):
        index = dataset[i]["frame_index"].flatten().tolist()
        assert len(index) == 10 and len({clip_of[f] for f in index}) == 1, "both groups in one stored clip"
        assert np.all(np.diff(index) == 3), "frames 1-5 and 6-10: consecutive stored frames"


def test_flowlstm_samples_its_sequence_evenly_over_the_whole_video():
    profile = get_profile("flowlstm")
    (indices,) = sample_clips(1000, profile.sampling)
    assert indices[0] == 0 and indices[-1] == 999 and np.ptp(np.diff(indices)) <= 1, "evenly over the whole video"
    for name in ("flowlstm", "flowlstm_vgg16", "flowlstm_efficientnet_b7", "flowcnn"):
        variant = VARIANTS[name]
        assert variant.profile == "flowlstm" and variant.recipe.batch_size == 128
        assert variant.spec.clip_length == len(indices) == 71, "one sample a video: the whole sequence, 70 flows"
        assert variant.spec.flow == "hsv" and variant.spec.size == (112, 112)


@pytest.mark.parametrize("name, trunk", [("flowlstm", "ResNet"), ("flowlstm_vgg16", "VGG16Trunk"),
                                         ("flowlstm_efficientnet_b7", "EfficientNet"), ("flowcnn", "ResNet")])
def test_flow_cnn_lstm_backbones_and_the_variant_without_lstm(name, trunk):
    net = build(name, VARIANTS[name].spec.with_text_overrides("input", {"size": "64x64", "clip_length": "5"}))
    assert type(net.backbone).__name__ == trunk
    assert (net.lstm is None) == (name == "flowcnn")
    if net.lstm is not None:
        assert net.lstm.num_layers == 2 and net.lstm.dropout == 0.5
    flow = torch.empty(3, 4, 3, 64, 64, device="meta")
    assert net(None, flow)["logits"].shape == (3, 2)


def test_the_stanford_3d_cnn_reads_16_whole_frames_spread_over_the_video_at_224_px():
    variant = VARIANTS["cnn3d_video"]
    profile = get_profile(variant.profile)
    assert profile.sampling.step == 0 and profile.sampling.clip_length == variant.spec.clip_length == 16
    assert profile.crops[0].mode == "frame" and tuple(profile.crops[0].size) == variant.spec.size == (224, 224)


def test_only_the_stanford_family_weighs_classes_by_default():
    assert {name for name, variant in VARIANTS.items() if variant.recipe.class_weights} == CLASS_WEIGHTED


@pytest.mark.parametrize("loss_name", ["mse", "bce", "bce_softf1", "ce", "gml"])
def test_class_weights_count_in_a_batch_of_one_class(loss_name):
    torch.manual_seed(0)
    labels = torch.ones(4, dtype=torch.int64)
    two = loss_name in ("ce", "gml")
    output = {"logits": torch.randn(4, 2) if two else torch.randn(4)}
    if loss_name == "gml":
        output.update(branch_logits=torch.randn(4, 2), clue=torch.randn(4, 8, 2, 2))
    loss = LOSSES[loss_name][0]
    weighted, unweighted = loss(output, labels, torch.tensor([2.0, 0.5])), loss(output, labels, torch.ones(2))
    assert not torch.isclose(weighted, unweighted), "weights must not cancel when the batch holds one class"


def test_models_shows_per_field_whether_a_value_is_the_papers_or_chosen_and_from_where(capsys):
    from cli import main
    from trainer.registry import FIELDS

    main(["models", "gml", "ofcnn"])
    blocks = capsys.readouterr().out.split("\n\n")
    assert [block.split(":")[0] for block in blocks] == ["gml", "ofcnn"]
    rows = {block.split(":")[0]: {line.split()[0]: line for line in block.splitlines()[1:]} for block in blocks}
    assert all(set(fields) == set(FIELDS) for fields in rows.values())
    assert rows["gml"]["lr"].endswith(" paper") and rows["gml"]["schedule"].split()[1:3] == ["150000", "iterations"]
    assert "chosen: not given; 0.9, the common SGD default" in rows["gml"]["momentum"]
    assert rows["ofcnn"]["loss"].endswith(" paper") and "chosen: not given; Adam" in rows["ofcnn"]["optimizer"]
    for variant in VARIANTS.values():
        assert all(value == "paper" or value.startswith("chosen: ") for value in variant.provenance().values())
