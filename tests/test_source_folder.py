import csv
import os
import re
import time

import pytest

import dataset_trees as trees
from pipeline.sources import load_inventory
from pipeline.sources.base import SourceOptions
from source_conformance import SourceTests, inventory, remove
from stages.errors import ConfigError


class TestFolderWithLabels(SourceTests):
    build = staticmethod(trees.folder_csv)
    # Paths of the CSV are relative to the root, so an empty root has none of them.
    missing_in_empty_root = f"no videos found for dataset folder; {len(trees.FOLDER_CSV)} videos listed in labels.csv are missing"
    official_splits = ("train", "val", "test")


class TestFolderOfRealAndFake(SourceTests):
    build = staticmethod(trees.folder_real_fake)
    # A root with neither real/ nor fake/ holds videos to screen; this one holds none.
    missing_in_empty_root = "no videos found for dataset folder"
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
        ("path,label\nclips/p1/a.mp4,2\n", "line 2: label '2'; allowed: 0 (real), 1 (fake), or empty for unknown"),
        ("path,label\nclips/p1/a.mp4,0\nclips/p2/../p1/a.mp4,1\n", "line 3: clips/p1/a is listed again (first on line 2)"),
        ("path,label\nclips/../../elsewhere.mp4,0\n", "line 2: path 'clips/../../elsewhere.mp4' is empty or outside --root"),
        ("path,label\n/etc/passwd.mp4,0\n", "line 2: path '/etc/passwd.mp4' is empty or outside --root"),
        ("path,label\nclips/p1/a.m3u8,0\n", "line 2: path 'clips/p1/a.m3u8' is not a video file; allowed extensions: .avi, .flv, "),
        ("path,label\nlabels.csv,0\n", "line 2: path 'labels.csv' is not a video file; allowed extensions: "),
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


def test_a_root_without_real_and_fake_holds_videos_to_screen(tmp_path, tiny_video):
    root = tmp_path / "screen"
    for relative in ("a.mp4", "day1/b.mkv", "day1/deep/c.avi"):
        trees.link(tiny_video, root / relative)
    (root / "notes.txt").write_text("not a video")
    found = inventory(trees.Tree("folder", root))
    assert {(r.video_id, r.label, r.split) for r in found.records} == {(v, -1, "test") for v in ("a", "day1/b", "day1/deep/c")}
    assert re.search(r"^split\s+real\s+fake\s+unlabeled\s+total$", found.table(), re.MULTILINE), found.table()
    assert re.search(r"^test\s+0\s+0\s+3\s+3$", found.table(), re.MULTILINE), found.table()


def test_a_root_of_reals_only_is_labelled_real(tmp_path, tiny_video):
    tree = trees.folder_real_fake(tmp_path / "folder", tiny_video)
    remove(tree, "fake")
    found = inventory(tree)
    assert sorted(r.video_id for r in found.records) == ["real/0000", "real/0001", "real/0002"]
    assert {r.label for r in found.records} == {0} and found.warnings == ("no fake/ folder: every video is real",)


def test_an_empty_label_is_unknown_and_goes_to_test_unless_the_row_says(tmp_path, tiny_video):
    tree = trees.folder_csv(tmp_path / "folder", tiny_video)
    write_csv(tree, "path,label,split\nclips/p1/a.mp4,,\nclips/p1/b.mp4,,train\nclips/p2/c.mkv,0,test\n")
    found = {r.video_id: (r.label, r.split) for r in inventory(tree).records}
    assert found == {"clips/p1/a": (-1, "test"), "clips/p1/b": (-1, "train"), "clips/p2/c": (0, "test")}


def test_a_csv_with_train_and_test_but_no_val_has_val_carved_from_train_by_group(tmp_path, tiny_video):
    tree = trees.folder_csv(tmp_path / "folder", tiny_video)
    rows = [(f"g{i}/v{j}.mp4", j % 2, "test" if i < 2 else "train", f"g{i}") for i in range(12) for j in range(2)]
    for path, *_ in rows:
        trees.link(tiny_video, tree.root / path)
    write_csv(tree, "path,label,split,group\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    for val_share, groups in ((0.1, 1), (0.5, 5)):
        found = inventory(tree, val_share=val_share)
        splits = {r.video_id: r.split for r in found.records}
        assert {splits[f"g{i}/v{j}"] for i in range(2) for j in range(2)} == {"test"}
        val_groups = {vid.split("/")[0] for vid, split in splits.items() if split == "val"}
        assert len(val_groups) == groups and all(splits[f"{g}/v0"] == splits[f"{g}/v1"] for g in val_groups)
        assert found.warnings == (f"labels.csv names no val split: val is {groups} of the 10 train groups "
                                  f"(share {val_share:g}, seed 0; --val-share sets it)",)
    assert inventory(tree, seed=1).records != inventory(tree, seed=0).records, "the seed picks the val groups"


def test_a_csv_saved_by_excel_with_a_byte_order_mark_reads(tmp_path, tiny_video):
    tree = trees.folder_csv(tmp_path / "folder", tiny_video)
    text = "path,label,split,group\n" + "".join(",".join(map(str, row)) + "\n" for row in trees.FOLDER_CSV)
    (tree.root / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert sorted(r.video_id for r in inventory(tree).records) == sorted(tree.videos)


def test_one_file_is_one_video_however_the_csv_spells_its_path(tmp_path, tiny_video):
    tree = trees.folder_csv(tmp_path / "folder", tiny_video)
    write_csv(tree, "path,label,split\nclips/p1/../p1/./a.mp4,0,train\nclips//p2/c.mkv,1,test\n")
    found = inventory(tree).records
    assert [(r.video_id, r.path) for r in found] == [("clips/p1/a", str(tree.root / "clips/p1/a.mp4")),
                                                      ("clips/p2/c", str(tree.root / "clips/p2/c.mkv"))]


def test_a_path_that_leaves_the_root_through_a_link_is_refused(tmp_path, tiny_video):
    tree = trees.folder_csv(tmp_path / "folder", tiny_video)
    trees.link(tiny_video, tmp_path / "outside" / "secret.mp4")
    (tree.root / "clips" / "out").symlink_to(tmp_path / "outside")
    (tree.root / "clips" / "p1" / "link.mp4").symlink_to(tmp_path / "outside" / "secret.mp4")
    for path in ("clips/out/secret.mp4", "clips/p1/link.mp4"):
        write_csv(tree, f"path,label\n{path},0\n")
        with pytest.raises(ConfigError, match=f"line 2: path '{path}' leads outside --root"):
            inventory(tree)


def test_reading_a_csv_takes_time_linear_in_its_rows(tmp_path):
    """Listing a long CSV's videos costs the same a row at 15k rows as at 60k, and a bounded
    multiple of parsing the CSV (a million-row CSV took 97 s; 60k rows took about 70 times
    their parse, now about 12)."""
    root = tmp_path / "many"
    for i in range(100):
        (root / f"d{i:02d}").mkdir(parents=True)
    names = [f"d{i % 100:02d}/v{i}.mp4" for i in range(60_000)]
    for name in names:
        os.close(os.open(root / name, os.O_CREAT | os.O_WRONLY))

    def seconds(rows: int) -> tuple[float, float]:
        """Least time to parse the CSV, and to list its videos, of three tries."""
        csv_path = tmp_path / f"labels{rows}.csv"
        csv_path.write_text("path,label\n" + "".join(f"{name},{i % 2}\n" for i, name in enumerate(names[:rows])))
        parse, listing = [], []
        for _ in range(3):
            started = time.perf_counter()
            with open(csv_path, newline="") as file:
                assert len(list(csv.DictReader(file))) == rows
            parse.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert len(load_inventory("folder", root, SourceOptions(labels_csv=str(csv_path))).records) == rows
            listing.append(time.perf_counter() - started)
        return min(parse), min(listing)

    _, small = seconds(15_000)
    parse, large = seconds(60_000)
    # 4x the rows: linear is 4x the time, quadratic 16x; the line sits between them (x8), so
    # that another job on the machine does not fail it (one did at 6.6x).
    assert large / small < 8, f"15k rows {small:.2f} s, 60k rows {large:.2f} s: not linear"
    assert large / parse < 30, f"60k rows: {large:.2f} s to list, {parse:.2f} s to parse the CSV"
