import re

import pytest

import dataset_trees as trees
from source_conformance import SourceTests, error_without, inventory
from stages.errors import ConfigError


class TestCelebDF(SourceTests):
    build = staticmethod(trees.celebdf)
    missing_in_empty_root = "missing Celeb-real/, YouTube-real/, Celeb-synthesis/, List_of_testing_videos.txt; found no videos"


class TestCelebDFv1(TestCelebDF):
    build = staticmethod(lambda root, video: trees.celebdf(root, video, dataset="celebdf-v1"))


def identities(video_id: str) -> set[str]:
    """Celeb-DF identities in a video's name: `id3` in `Celeb-real/id3_0000`, two in a fake."""
    return set(re.findall(r"id\d+", video_id.split("/")[1]))


def test_the_test_list_labels_are_inverted(tmp_path, tiny_video):
    tree = trees.celebdf(tmp_path / "celebdf", tiny_video)
    by_id = {record.video_id: record for record in inventory(tree).records}
    for line in trees.CELEBDF_TEST_LIST:
        flag, path = line.split(" ")
        record = by_id[path.removesuffix(".mp4")]
        assert record.split == "test" and record.label == 1 - int(flag)


def test_no_identity_of_a_test_video_is_in_train_or_val(tmp_path, tiny_video):
    tree = trees.celebdf(tmp_path / "celebdf", tiny_video)
    found = inventory(tree, split_ratios=(0.5, 0.5, 0))
    test = set().union(*(identities(r.video_id) for r in found.records if r.split == "test"))
    rest = set().union(*(identities(r.video_id) for r in found.records if r.split != "test"))
    assert test == {"id0", "id1"} and rest == {"id2", "id3", "id4", "id5"}
    assert any(w.startswith(f"{len(trees.CELEBDF_LEFT_OUT)} videos left out: they show an identity of a listed test video") for w in found.warnings)


def test_a_list_with_real_marked_0_is_refused(tmp_path, tiny_video):
    tree = trees.celebdf(tmp_path / "celebdf", tiny_video)
    # As a list "fixed" to our own convention would read.
    (tree.root / "List_of_testing_videos.txt").write_text("1 Celeb-synthesis/id0_id1_0000.mp4\n0 Celeb-real/id0_0000.mp4\n")
    with pytest.raises(ConfigError, match=r"^List_of_testing_videos.txt line 1: 1 for Celeb-synthesis/id0_id1_0000.mp4, a fake video; "
                                          r"this list must mark real with 1 and fake with 0$"):
        inventory(tree)


def test_a_listed_video_that_is_missing_is_a_warning(tmp_path, tiny_video):
    tree = trees.celebdf(tmp_path / "celebdf", tiny_video)
    (tree.root / "YouTube-real" / "00000.mp4").unlink()
    found = inventory(tree)
    assert "1 videos listed in List_of_testing_videos.txt are missing (e.g. YouTube-real/00000)" in found.warnings


@pytest.mark.parametrize("line", ["2 Celeb-real/id0_0000.mp4", "1 Celeb-reals/id0_0000.mp4", "Celeb-real/id0_0000.mp4"])
def test_a_malformed_test_list_line_is_named(tmp_path, tiny_video, line):
    tree = trees.celebdf(tmp_path / "celebdf", tiny_video)
    (tree.root / "List_of_testing_videos.txt").write_text(f"1 YouTube-real/00000.mp4\n{line}\n")
    with pytest.raises(ConfigError, match="^List_of_testing_videos.txt line 2: "):
        inventory(tree)


def test_a_missing_test_list_is_named_with_the_counts_found(tmp_path, tiny_video):
    message = error_without(trees.celebdf(tmp_path / "celebdf", tiny_video), "List_of_testing_videos.txt")
    counts = ", ".join(f"{len(stems)} in {folder}/" for folder, stems in trees.CELEBDF_FILES.items())
    assert message.endswith(f"missing List_of_testing_videos.txt; found {counts}")


def test_an_unreadable_test_list_is_named(tmp_path, tiny_video):
    tree = trees.celebdf(tmp_path / "celebdf", tiny_video)
    (tree.root / "List_of_testing_videos.txt").write_bytes(b"\xff\xfe1 Celeb-real\x00")
    with pytest.raises(ConfigError, match="^List_of_testing_videos.txt: cannot read it"):
        inventory(tree)
