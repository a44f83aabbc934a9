import json
import pytest

import dataset_trees as trees
from source_conformance import SourceTests, error_without, inventory, remove
from stages.errors import ConfigError


class TestDFDC(SourceTests):
    build = staticmethod(trees.dfdc)
    missing_in_empty_root = "missing dfdc_train_part_*/ folders, and no test folder with labels.csv; found no videos"


def test_fakes_share_the_split_of_their_original_across_parts_and_seeds(tmp_path, tiny_video):
    tree = trees.dfdc(tmp_path / "dfdc", tiny_video)
    for seed in range(8):
        by_id = {record.video_id: record for record in inventory(tree, seed=seed).records}
        cross_part = by_id["dfdc_train_part_0/c0fakecros"]
        assert cross_part.extra["original"] == "dfdc_train_part_01/dfdc_train_part_1/d1realdddd"
        for record in by_id.values():
            if record.label == 1 and "original" in record.extra:
                assert by_id[record.extra["original"]].split == record.split


def test_nested_part_folders_are_read(tmp_path, tiny_video):
    tree = trees.dfdc(tmp_path / "dfdc", tiny_video)
    nested = [r for r in inventory(tree).records if r.video_id.startswith("dfdc_train_part_01/dfdc_train_part_1/")]
    assert len(nested) == len(trees.DFDC_PARTS["dfdc_train_part_01/dfdc_train_part_1"])
    assert {r.extra["part"] for r in nested} == {1}


def test_without_a_test_set_the_parts_give_every_split(tmp_path, tiny_video):
    tree = trees.dfdc(tmp_path / "dfdc", tiny_video)
    remove(tree, "test")
    splits = {r.split for seed in range(4) for r in inventory(tree, seed=seed, split_ratios=(1, 1, 1)).records}
    assert splits == {"train", "val", "test"}


def test_a_part_without_metadata_is_named(tmp_path, tiny_video):
    message = error_without(trees.dfdc(tmp_path / "dfdc", tiny_video), "dfdc_train_part_01/dfdc_train_part_1/metadata.json")
    assert message.endswith("missing dfdc_train_part_01/dfdc_train_part_1/metadata.json; found 8 in training parts, 3 in the test set")


def test_unlisted_and_missing_videos_and_lost_originals_are_warnings(tmp_path, tiny_video):
    tree = trees.dfdc(tmp_path / "dfdc", tiny_video)
    (tree.root / "dfdc_train_part_2" / "g2realgggg.mp4").unlink()
    trees.link(tiny_video, tree.root / "dfdc_train_part_2" / "zzunlisted.mp4")
    warnings = inventory(tree).warnings
    assert warnings == (
        "1 videos listed in metadata.json or labels.csv are missing (e.g. g2realgggg.mp4)",
        "1 videos not listed in their metadata.json or labels.csv, left out (e.g. dfdc_train_part_2/zzunlisted)",
        "1 fakes whose original video is not among the videos found (e.g. dfdc_train_part_2/h2fakehhhh <- g2realgggg)",
    )


def test_a_bad_label_is_named(tmp_path, tiny_video):
    tree = trees.dfdc(tmp_path / "dfdc", tiny_video)
    (tree.root / "dfdc_train_part_2" / "metadata.json").write_text(json.dumps({"g2realgggg.mp4": {"label": "real"}}))
    with pytest.raises(ConfigError, match="^dfdc_train_part_2/metadata.json: entry 'g2realgggg.mp4': label 'real'; allowed: REAL, FAKE$"):
        inventory(tree)
    (tree.root / "test" / "labels.csv").write_text("filename,label\nt0realtttt.mp4,FAKE\n")
    (tree.root / "dfdc_train_part_2" / "metadata.json").write_text("{}")
    with pytest.raises(ConfigError, match="^test/labels.csv line 2: label 'FAKE'; allowed: 0 "):
        inventory(tree)
