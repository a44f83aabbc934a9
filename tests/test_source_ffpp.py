import json
import shutil

import pytest

import dataset_trees as trees
from pipeline.sources import load_inventory
from pipeline.sources.base import SourceOptions
from source_conformance import SourceTests, error_without, inventory
from stages.errors import ConfigError


class TestFFPP(SourceTests):
    build = staticmethod(trees.ffpp)
    missing_in_empty_root = "original_sequences/youtube/c23/videos/"
    official_splits = ("train", "val", "test")


class TestFFPPWithDeepFakeDetection(SourceTests):
    build = staticmethod(lambda root, video: trees.add_dfd(trees.ffpp(root, video), video))
    missing_in_empty_root = "original_sequences/actors/c23/videos/"


def test_every_pair_expands_to_two_reals_and_two_fakes_per_method(tmp_path, tiny_video):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video)
    by_id = {record.video_id: record for record in inventory(tree).records}
    for split, pairs in trees.FFPP_PAIRS.items():
        for target, source in pairs:
            members = [f"original_sequences/youtube/c23/videos/{real}" for real in (target, source)]
            members += [f"manipulated_sequences/{method}/c23/videos/{stem}" for method in trees.FFPP_METHODS
                        for stem in (f"{target}_{source}", f"{source}_{target}")]
            assert [(by_id[m].split, by_id[m].label) for m in members] == [(split, 0)] * 2 + [(split, 1)] * 8
    fake = by_id["manipulated_sequences/Face2Face/c23/videos/004_005"]
    assert fake.extra | {} == {"method": "Face2Face", "compression": "c23", "target": "004", "source": "005",
                               "original": "original_sequences/youtube/c23/videos/004", "group": "004"}


def test_masks_are_recorded_where_present(tmp_path, tiny_video):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video, masks=("Deepfakes",))
    for record in inventory(tree).records:
        if record.extra.get("method") == "Deepfakes":
            assert record.extra["mask"] == str(tree.root / "manipulated_sequences/Deepfakes/masks/videos" / f"{record.extra['target']}_{record.extra['source']}.mp4")
        else:
            assert "mask" not in record.extra


@pytest.mark.parametrize("comp", ["raw", "c0"])
def test_raw_is_found_under_either_name(tmp_path, tiny_video, comp):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video, comp_folder="c0")
    records = inventory(tree, comp=comp).records
    assert sorted(r.video_id for r in records) == sorted(tree.videos)
    assert {record.extra["compression"] for record in records} == {"raw"}


def test_deepfakedetection_is_split_by_the_manipulated_actor(tmp_path, tiny_video):
    tree = trees.add_dfd(trees.ffpp(tmp_path / "ffpp", tiny_video), tiny_video)
    records = [r for r in inventory(tree).records if "/actors/" in r.video_id or r.extra.get("method") == "DeepFakeDetection"]
    assert len(records) == len(trees.DFD_REALS) + len(trees.DFD_FAKES)
    split_of_actor = {}
    for record in records:
        actor = record.extra.get("actor") or record.extra["target"]
        assert split_of_actor.setdefault(actor, record.split) == record.split


def test_only_the_requested_methods(tmp_path, tiny_video):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video)
    records = inventory(tree, methods=("deepfakes", "NeuralTextures")).records
    assert {r.extra.get("method") for r in records if r.label} == {"Deepfakes", "NeuralTextures"}
    with pytest.raises(ConfigError, match="'Deepfake'.*allowed: Deepfakes, Face2Face"):
        inventory(tree, methods=("Deepfake",))


def test_split_files_from_the_root_or_another_folder(tmp_path, tiny_video):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video)
    expected = {(r.video_id, r.split) for r in inventory(tree).records}
    elsewhere = shutil.move(tree.root / "splits", tmp_path / "official-splits")
    assert {(r.video_id, r.split) for r in inventory(tree, splits_dir=str(elsewhere)).records} == expected
    for name in ("train", "val", "test"):
        shutil.copy(tmp_path / "official-splits" / f"{name}.json", tree.root)
    assert {(r.video_id, r.split) for r in inventory(tree).records} == expected


@pytest.mark.parametrize(
    "missing, named",
    [
        ("manipulated_sequences/FaceSwap", "missing manipulated_sequences/FaceSwap/c23/videos/"),
        ("splits/test.json", "missing splits/test.json (or test.json)"),
        ("original_sequences", "missing original_sequences/youtube/c23/videos/"),
    ],
)
def test_a_partial_root_names_the_missing_piece_and_counts_the_rest(tmp_path, tiny_video, missing, named):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video)
    message = error_without(tree, missing)
    assert named in message
    deepfakes = sum("/Deepfakes/" in video for video in tree.videos)
    assert f"{deepfakes} Deepfakes fakes" in message


def test_a_leak_between_split_files_is_reported(tmp_path, tiny_video):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video)
    # 000 is paired with 001 for train; pairing it with 006 for test too leaks identity 000.
    (tree.root / "splits" / "test.json").write_text(json.dumps(trees.FFPP_PAIRS["test"] + [["000", "006"]]))
    found = inventory(tree)
    assert any("identities or source videos in more than one split" in w and "000: test, train" in w for w in found.warnings), found.warnings


def test_malformed_split_file_is_named(tmp_path, tiny_video):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video)
    (tree.root / "splits" / "val.json").write_text('{"004": "005"}')
    with pytest.raises(ConfigError, match=r"^splits/val.json: not a JSON list of \[target, source\] pairs"):
        inventory(tree)


def test_videos_in_no_pair_are_left_out_with_a_warning(tmp_path, tiny_video):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video)
    trees.link(tiny_video, tree.root / "original_sequences/youtube/c23/videos/999.mp4")
    found = load_inventory("ffpp", tree.root, SourceOptions())
    assert "original_sequences/youtube/c23/videos/999" not in {r.video_id for r in found.records}
    assert any(w.startswith("1 videos in no pair of the split files, left out") for w in found.warnings), found.warnings
