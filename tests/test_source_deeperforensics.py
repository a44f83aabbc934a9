import pytest

import dataset_trees as trees
from pipeline.sources import load_inventory
from pipeline.sources.base import SourceOptions
from source_conformance import SourceTests, error_without, inventory
from stages.errors import ConfigError


class TestDeeperForensics(SourceTests):
    build = staticmethod(lambda root, video: trees.deeperforensics(root, video, root.parent / "ffpp"))
    missing_in_empty_root = "missing manipulated_videos/<variant>/, lists/splits/train.txt, lists/splits/val.txt, lists/splits/test.txt"
    official_splits = ("train", "val", "test")


def test_reals_are_the_ffpp_targets_in_the_split_of_their_fakes(tmp_path, tiny_video):
    tree = trees.deeperforensics(tmp_path / "deeperforensics", tiny_video, tmp_path / "ffpp")
    records = inventory(tree).records
    reals = {r.video_id: r.split for r in records if r.label == 0}
    targets = {name.split("_")[0]: split for split, names in trees.DEEPERFORENSICS_LISTS.items() for name in names}
    assert reals == {f"original_sequences/youtube/c23/videos/{target}": split for target, split in targets.items()}
    for record in records:
        assert record.path.startswith(str(tmp_path / ("deeperforensics" if record.label else "ffpp")))


def test_only_the_requested_variants(tmp_path, tiny_video):
    tree = trees.deeperforensics(tmp_path / "deeperforensics", tiny_video, tmp_path / "ffpp")
    assert {r.extra["method"] for r in inventory(tree, methods=("end_to_end",)).records if r.label} == {"end_to_end"}
    with pytest.raises(ConfigError, match="missing manipulated_videos/end_to_end_level_9/"):
        inventory(tree, methods=("end_to_end_level_9",))


def test_the_ffpp_root_is_required(tmp_path, tiny_video):
    tree = trees.deeperforensics(tmp_path / "deeperforensics", tiny_video, tmp_path / "ffpp")
    with pytest.raises(ConfigError, match="^--ffpp-root: required for deeperforensics"):
        load_inventory("deeperforensics", tree.root, SourceOptions())
    with pytest.raises(ConfigError, match="ffpp/original_sequences/youtube/c40/videos/"):
        inventory(tree, comp="c40")


def test_a_missing_split_list_is_named(tmp_path, tiny_video):
    message = error_without(trees.deeperforensics(tmp_path / "deeperforensics", tiny_video, tmp_path / "ffpp"), "lists/splits/val.txt")
    assert message.endswith("missing lists/splits/val.txt; found 4 end_to_end fakes, 4 end_to_end_level_1 fakes, 5 FaceForensics++ youtube reals")


def test_listed_fakes_missing_from_a_variant_and_unlisted_fakes_are_warnings(tmp_path, tiny_video):
    tree = trees.deeperforensics(tmp_path / "deeperforensics", tiny_video, tmp_path / "ffpp")
    (tree.root / "manipulated_videos/end_to_end_level_1/002_M103.mp4").unlink()
    trees.link(tiny_video, tree.root / "manipulated_videos/end_to_end/009_M109.mp4")
    assert inventory(tree).warnings == (
        "1 fakes named in lists/splits/*.txt are missing (e.g. end_to_end_level_1/002_M103.mp4)",
        "1 fakes in no split list, left out (e.g. manipulated_videos/end_to_end/009_M109)",
    )
