import pytest

from dataset_trees import Tree
from pipeline.sources import demo
from source_conformance import SourceTests


class TestDemo(SourceTests):
    official_splits = ("train", "val", "test")
    # The demo writes its corpus into an empty root rather than refusing it.
    test_an_empty_root_is_a_one_line_error_naming_what_is_missing = None

    @pytest.fixture
    def tree(self, demo_root):
        videos = {}
        for i, split in enumerate(demo.SPLIT_BY_IDENTITY):
            videos[f"real/id{i:02d}"] = (0, split)
            videos[f"fake/id{i:02d}"] = (1, split)
        return Tree("demo", demo_root, videos)
