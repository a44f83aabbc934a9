import pytest

import dataset_trees as trees
from source_conformance import SourceTests, error_without, inventory
from stages.errors import ConfigError


class TestDFDCPreview(SourceTests):
    build = staticmethod(trees.dfdcp)
    missing_in_empty_root = "missing original_videos/, method_A/, method_B/, dataset.json; found no videos"


def test_validation_is_carved_from_train_by_identity(tmp_path, tiny_video):
    tree = trees.dfdcp(tmp_path / "dfdcp", tiny_video)
    seen_val = False
    for seed in range(8):
        records = inventory(tree, seed=seed, split_ratios=(1, 1, 0)).records
        split_of_identity = {}
        for record in records:
            identity = record.video_id.split("/")[1]
            assert split_of_identity.setdefault(identity, record.split) == record.split
        assert split_of_identity["103"] == "test" and "test" not in {s for i, s in split_of_identity.items() if i != "103"}
        seen_val |= "val" in split_of_identity.values()
    assert seen_val


def test_a_missing_dataset_json_is_named(tmp_path, tiny_video):
    message = error_without(trees.dfdcp(tmp_path / "dfdcp", tiny_video), "dataset.json")
    assert message.endswith("missing dataset.json; found 4 in original_videos/, 3 in method_A/, 2 in method_B/")


def test_an_entry_with_an_unknown_set_is_named(tmp_path, tiny_video):
    tree = trees.dfdcp(tmp_path / "dfdcp", tiny_video)
    (tree.root / "dataset.json").write_text('{"original_videos/100/1000001.mp4": {"label": "real", "set": "val"}}')
    with pytest.raises(ConfigError, match=r"^dataset.json: entry 'original_videos/100/1000001.mp4': .* is not"):
        inventory(tree)
