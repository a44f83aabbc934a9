import re

import pytest

import dataset_trees as trees
from source_conformance import SourceTests, error_without, inventory
from stages.errors import ConfigError


class TestCelebDF(SourceTests):
    build = staticmethod(trees.celebdf)
    missing_in_empty_root = "missing Celeb-real/, YouTube-real/, Celeb-synthesis/, List_of_testing_videos.txt; found no videos"

    def test_families_and_groups_stay_in_one_split(self, tree):
        # The standard protocol shares identities between train/val and the official test
        # list, never between train and val; a fake stays with its original.
        records = inventory(tree).records
        splits_of_group = {}
        for record in records:
            splits_of_group.setdefault(record.extra["group"], set()).add(record.split)
        assert all(len(splits - {"test"}) <= 1 for splits in splits_of_group.values()), splits_of_group
        split_of = {record.video_id: record.split for record in records}
        for record in records:
            if record.label == 1 and record.extra["original"] in split_of and record.split != "test":
                assert split_of[record.extra["original"]] == record.split, record


class TestCelebDFv1(TestCelebDF):
    build = staticmethod(lambda root, video: trees.celebdf(root, video, dataset="celebdf-v1"))


class TestCelebDFIdentityDisjoint(SourceTests):
    build = staticmethod(lambda root, video: trees.celebdf(root, video, identity_disjoint=True))
    missing_in_empty_root = TestCelebDF.missing_in_empty_root


class TestCelebDFv1IdentityDisjoint(TestCelebDFIdentityDisjoint):
    build = staticmethod(lambda root, video: trees.celebdf(root, video, dataset="celebdf-v1", identity_disjoint=True))


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


@pytest.mark.parametrize("dataset", ["celebdf", "celebdf-v1"])
def test_by_default_train_and_val_hold_every_video_outside_the_test_list(tmp_path, tiny_video, dataset):
    tree = trees.celebdf(tmp_path / dataset, tiny_video, dataset=dataset)
    listed = {line.split(" ")[1].removesuffix(".mp4") for line in trees.CELEBDF_TEST_LIST}
    trained = set()
    for seed in range(4):
        found = inventory(tree, seed=seed)
        split_of = {r.video_id: r.split for r in found.records}
        on_disk = {f"{folder}/{stem}" for folder, stems in trees.CELEBDF_FILES.items() for stem in stems}
        assert set(split_of) == on_disk
        assert {vid for vid, split in split_of.items() if split == "test"} == listed
        outside = {vid: split for vid, split in split_of.items() if vid not in listed}
        assert set(outside.values()) <= {"train", "val"}
        trained |= {vid for vid, split in outside.items() if split == "train"}
        for vid in trees.CELEBDF_SHARING_TEST_IDENTITIES:
            assert split_of[vid] in ("train", "val")
        sharing = sorted(trees.CELEBDF_SHARING_TEST_IDENTITIES)
        assert (f"{len(sharing)} train or val videos show an identity of a listed test video (Celeb-DF's standard protocol; "
                f"--identity-disjoint leaves them out) (e.g. {', '.join(sharing)})") in found.warnings
        counts = {split: sum(split_of[vid] == split for vid in sharing) for split in ("train", "val")}
        assert found.table().endswith(f"videos sharing an identity with test: train {counts['train']}, val {counts['val']}")
    # Both classes train, and so do videos of identities the test list shows.
    assert {vid.split("/")[0] for vid in trained} == {"Celeb-real", "Celeb-synthesis", "YouTube-real"}
    assert trained >= set(trees.CELEBDF_SHARING_TEST_IDENTITIES)


def test_identity_disjoint_keeps_every_identity_of_the_test_list_out_of_train_and_val(tmp_path, tiny_video):
    tree = trees.celebdf(tmp_path / "celebdf", tiny_video, identity_disjoint=True)
    found = inventory(tree, split_ratios=(0.5, 0.5, 0))
    test = set().union(*(identities(r.video_id) for r in found.records if r.split == "test"))
    rest = set().union(*(identities(r.video_id) for r in found.records if r.split != "test"))
    assert test == {"id0", "id1"} and rest == {"id2", "id3", "id4", "id5"}
    assert any(w.startswith(f"{len(trees.CELEBDF_SHARING_TEST_IDENTITIES)} videos left out: they show an identity of a listed test video")
               for w in found.warnings)
    # The videos it keeps are split as by default: one seeded split by identity.
    default = {r.video_id: r.split for r in inventory(tree, split_ratios=(0.5, 0.5, 0), identity_disjoint=False).records}
    assert {r.video_id: r.split for r in found.records} == {vid: split for vid, split in default.items()
                                                             if vid not in trees.CELEBDF_SHARING_TEST_IDENTITIES}


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
