import re

import pytest

import dataset_trees as trees
from source_conformance import SourceTests, inventory
from stages.errors import ConfigError


class TestFolderWithLabels(SourceTests):
    build = staticmethod(trees.folder_csv)
    # Paths of the CSV are relative to the root, so an empty root has none of them.
    missing_in_empty_root = f"no videos found for dataset folder; {len(trees.FOLDER_CSV)} videos listed in labels.csv are missing"
    official_splits = ("train", "val", "test")


class TestFolderOfRealAndFake(SourceTests):
    build = staticmethod(trees.folder_real_fake)
    missing_in_empty_root = "expected folders real/ and fake/ (or --labels FILE.csv), missing real/, fake/"
    official_splits = ()


def write_csv(tree, text):
    (tree.root / "labels.csv").write_text(text)


def test_rows_without_a_split_are_split_by_group(tmp_path, tiny_video):
    tree = trees.folder_csv(tmp_path / "folder", tiny_video)
    write_csv(tree, "path,label,group\n" + "".join(f"{path},{label},{group}\n" for path, label, _, group in trees.FOLDER_CSV))
    for seed in range(6):
        records = inventory(tree, seed=seed, split_ratios=(1, 1, 1)).records
        assert len(records) == len(trees.FOLDER_CSV)
        for group in ("p1", "p2", "p3"):
            assert len({r.split for r in records if r.extra["group"] == group}) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,label\nclips/p1/a.mp4,fake\n", "line 2: label 'fake'; allowed: 0 (real), 1 (fake)"),
        ("path,label,split\nclips/p1/a.mp4,0,dev\n", "line 2: split 'dev'; allowed: train, val, test"),
        ("path,label\nclips/p1/a.mp4,0\nclips/p1/a.mp4,1\n", "line 3: clips/p1/a is listed again (first on line 2)"),
        ("path,label\n../elsewhere.mp4,0\n", "line 2: path '../elsewhere.mp4' is empty or outside --root"),
        ("file,label\nclips/p1/a.mp4,0\n", "expected a header path,label[,split][,group]; found file,label"),
        ("path,label\nclips/p1/a.mp4\n", "line 2: label ''; allowed: 0 (real), 1 (fake)"),
    ],
)
def test_a_bad_labels_file_is_named_with_its_line(tmp_path, tiny_video, text, message):
    tree = trees.folder_csv(tmp_path / "folder", tiny_video)
    write_csv(tree, text)
    with pytest.raises(ConfigError, match=f"^--labels {re.escape(str(tree.root / 'labels.csv'))}.*{re.escape(message)}"):
        inventory(tree)


def test_listed_files_that_are_missing_are_a_warning(tmp_path, tiny_video):
    tree = trees.folder_csv(tmp_path / "folder", tiny_video)
    (tree.root / "clips/p3/f.avi").unlink()
    found = inventory(tree)
    assert len(found.records) == len(trees.FOLDER_CSV) - 1
    assert found.warnings == ("1 videos listed in labels.csv are missing (e.g. clips/p3/f.avi)",)
