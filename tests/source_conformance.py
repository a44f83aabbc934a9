"""What every source must do. A dataset's test class subclasses SourceTests and provides the
`tree` fixture (see dataset_trees.py); these tests then run on its tree."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dataset_trees import Tree
from pipeline.sources import leaks, load_inventory
from pipeline.sources.base import SPLITS, SourceOptions
from stages.errors import ConfigError


def inventory(tree: Tree, **options):
    return load_inventory(tree.dataset, tree.root, SourceOptions(**{**tree.options, **options}))


def remove(tree: Tree, relative: str) -> None:
    target = tree.root / relative
    shutil.rmtree(target) if target.is_dir() else target.unlink()


def error_without(tree: Tree, relative: str) -> str:
    """The error a tree gives once a file or folder of it is removed; checked to be one line."""
    remove(tree, relative)
    with pytest.raises(ConfigError) as error:
        inventory(tree)
    assert "\n" not in str(error.value)
    return str(error.value)


class SourceTests:
    # The dataset_trees builder of the dataset's tree: (root, video) -> Tree.
    build: Callable[[Path, Path], Tree]
    # What an empty root is told it lacks.
    missing_in_empty_root: str
    # Splits taken from the dataset's own files, which the seed must not move.
    official_splits: tuple[str, ...] = ("test",)

    @pytest.fixture
    def tree(self, tmp_path, tiny_video) -> Tree:
        return type(self).build(tmp_path / "root", tiny_video)

    def test_every_video_has_its_label_and_split(self, tree):
        records = inventory(tree).records
        assert sorted(record.video_id for record in records) == sorted(tree.videos)
        for record in records:
            label, splits = tree.videos[record.video_id]
            assert record.label == label and record.split in splits.split("|"), record

    def test_records_are_well_formed(self, tree):
        records = inventory(tree).records
        for record in records:
            path = Path(record.path)
            assert path.is_absolute() and path.is_file(), record
            assert record.label in (0, 1) and record.split in SPLITS and record.dataset == tree.dataset
            root = next(root for root in tree.roots if path.is_relative_to(root))
            assert record.video_id == path.relative_to(root).with_suffix("").as_posix()
            assert json.loads(json.dumps(record.extra)) == record.extra, "extra must survive the store's JSON attributes"
            assert "group" in record.extra
        assert len({record.video_id for record in records}) == len(records)

    def test_the_same_records_every_time(self, tree):
        first, second = inventory(tree), inventory(tree)
        assert [(r.video_id, r.split, r.label, r.extra) for r in first.records] == [(r.video_id, r.split, r.label, r.extra) for r in second.records]

    def test_families_and_groups_stay_in_one_split(self, tree):
        records = inventory(tree).records
        assert leaks(records) == []
        split_of = {record.video_id: record.split for record in records}
        for record in records:
            if record.label == 1 and "original" in record.extra:
                assert split_of[record.extra["original"]] == record.split, record

    def test_official_splits_do_not_move_with_the_seed(self, tree):
        def official(seed):
            return {(r.video_id, r.split) for r in inventory(tree, seed=seed).records if r.split in self.official_splits}

        assert official(0) == official(1)
        if self.official_splits:
            assert official(0)

    def test_the_table_counts_every_record(self, tree):
        found = inventory(tree)
        table = found.table()
        for split in SPLITS:
            row = re.search(rf"^{split}\s+(\d+)\s+(\d+)\s+(\d+)$", table, re.MULTILINE)
            real, fake = sum(r.split == split and r.label == 0 for r in found.records), sum(r.split == split and r.label == 1 for r in found.records)
            assert row and tuple(map(int, row.groups())) == (real, fake, real + fake), table
        assert re.search(rf"^all\s+\d+\s+\d+\s+{len(found.records)}$", table, re.MULTILINE), table

    def test_an_empty_root_is_a_one_line_error_naming_what_is_missing(self, tree, tmp_path):
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(ConfigError) as error:
            load_inventory(tree.dataset, empty, SourceOptions(**tree.options))
        message = str(error.value)
        assert self.missing_in_empty_root in message and "\n" not in message and str(empty) in message
