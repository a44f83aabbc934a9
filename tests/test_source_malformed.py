"""Label and split files that are malformed or hostile: every adapter answers one line naming
the file, the entry and the problem (exit 2 from the command line), never a traceback."""

from __future__ import annotations

import json

import pytest

import cli
import dataset_trees as trees
from source_conformance import inventory
from stages.errors import ConfigError

DEEP = "[" * 100_000 + "]" * 100_000
DFDC_PART = "dfdc_train_part_0/metadata.json"


def dfdc_entry(info) -> str:
    return json.dumps({"a0realaaaa.mp4": {"label": "REAL"}, "b0fakebbbb.mp4": info})


CASES = {
    "dfdc original a list": (trees.dfdc, DFDC_PART, dfdc_entry({"label": "FAKE", "original": ["a0realaaaa.mp4"]}),
                             "dfdc_train_part_0/metadata.json: entry 'b0fakebbbb.mp4': original ['a0realaaaa.mp4'] is not a video file name"),
    "dfdc original a number": (trees.dfdc, DFDC_PART, dfdc_entry({"label": "FAKE", "original": 7}),
                               "dfdc_train_part_0/metadata.json: entry 'b0fakebbbb.mp4': original 7 is not a video file name"),
    "dfdc original a path": (trees.dfdc, DFDC_PART, dfdc_entry({"label": "FAKE", "original": "../x.mp4"}),
                             "dfdc_train_part_0/metadata.json: entry 'b0fakebbbb.mp4': original '../x.mp4' is not a video file name"),
    "dfdc label a list": (trees.dfdc, DFDC_PART, dfdc_entry({"label": ["FAKE"]}),
                          "dfdc_train_part_0/metadata.json: entry 'b0fakebbbb.mp4': label ['FAKE']; allowed: REAL, FAKE"),
    "dfdc entry not an object": (trees.dfdc, DFDC_PART, dfdc_entry("FAKE"),
                                 "dfdc_train_part_0/metadata.json: entry 'b0fakebbbb.mp4': 'FAKE' is not an object"),
    "dfdc name a path": (trees.dfdc, DFDC_PART, json.dumps({"../../etc.mp4": {"label": "REAL"}}),
                         "dfdc_train_part_0/metadata.json: entry '../../etc.mp4': not a video file name"),
    "dfdc deeply nested": (trees.dfdc, DFDC_PART, DEEP, "dfdc_train_part_0/metadata.json: not a JSON object of file name"),
    "dfdc not an object": (trees.dfdc, DFDC_PART, "[1, 2]", "dfdc_train_part_0/metadata.json: not a JSON object of file name"),
    "dfdc test filename missing": (trees.dfdc, "test/labels.csv", "filename,label\n,1\n", "test/labels.csv line 2: filename '' is not a video file name"),
    "dfdc test row short": (trees.dfdc, "test/labels.csv", "filename,label\nt0realtttt.mp4\n", "test/labels.csv line 2: label ''; allowed: 0"),
    "dfdcp key empty": (trees.dfdcp, "dataset.json", json.dumps({"": {"label": "real", "set": "train"}}),
                        "dataset.json: entry '': not a path <original_videos | method_A | method_B>/<identity>/.../<file>.mp4 inside the root"),
    "dfdcp key dot": (trees.dfdcp, "dataset.json", json.dumps({".": {"label": "real", "set": "train"}}), "dataset.json: entry '.': not a path"),
    "dfdcp key escaping": (trees.dfdcp, "dataset.json", json.dumps({"original_videos/../../x/y.mp4": {"label": "real", "set": "train"}}),
                           "dataset.json: entry 'original_videos/../../x/y.mp4': not a path"),
    "dfdcp key spelled twice": (trees.dfdcp, "dataset.json",
                                json.dumps({"original_videos/100/1000001.mp4": {"label": "real", "set": "train"},
                                            "original_videos/100/./1000001.mp4": {"label": "fake", "set": "test"}}),
                                "dataset.json: entry 'original_videos/100/1000001.mp4': the same video as entry 'original_videos/100/./1000001.mp4'"),
    "dfdcp label a list": (trees.dfdcp, "dataset.json", json.dumps({"original_videos/100/1000001.mp4": {"label": ["real"], "set": "train"}}),
                           "dataset.json: entry 'original_videos/100/1000001.mp4': {'label': ['real'], 'set': 'train'} is not"),
    "dfdcp deeply nested": (trees.dfdcp, "dataset.json", "{\"a\": " + DEEP + "}", "dataset.json: not a JSON object of relative path"),
    "ffpp deeply nested": (lambda root, video: trees.ffpp(root, video), "splits/train.json", DEEP,
                           "splits/train.json: not a JSON list of [target, source] pairs"),
    "ffpp pair of numbers": (lambda root, video: trees.ffpp(root, video), "splits/train.json", "[[0, 1]]",
                             "splits/train.json: not a JSON list of [target, source] pairs"),
    "celebdf name a path": (trees.celebdf, "List_of_testing_videos.txt", "1 Celeb-real/../../id0_0000.mp4\n",
                            "List_of_testing_videos.txt line 1: '1 Celeb-real/../../id0_0000.mp4' is not"),
    "deeperforensics name a path": (lambda root, video: trees.deeperforensics(root, video, root.parent / "ffpp-df"), "lists/splits/train.txt",
                                    "../000_M101.mp4\n", "lists/splits/train.txt: '../000_M101.mp4' is not a fake's file name"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_metadata_is_one_line_naming_file_entry_and_problem(tmp_path, tiny_video, case):
    build, relative, content, message = CASES[case]
    tree = build(tmp_path / "root", tiny_video)
    (tree.root / relative).write_text(content)
    with pytest.raises(ConfigError) as error:
        inventory(tree)
    assert str(error.value).startswith(message) and "\n" not in str(error.value), str(error.value)


def test_label_files_saved_with_a_byte_order_mark_read(tmp_path, tiny_video):
    tree = trees.dfdcp(tmp_path / "root", tiny_video)
    listing = tree.root / "dataset.json"
    listing.write_bytes(b"\xef\xbb\xbf" + listing.read_bytes())
    assert sorted(r.video_id for r in inventory(tree).records) == sorted(tree.videos)


def test_the_command_line_prints_one_line_and_exits_2(tmp_path, tiny_video, capsys):
    tree = trees.dfdc(tmp_path / "root", tiny_video)
    (tree.root / DFDC_PART).write_text(dfdc_entry({"label": "FAKE", "original": ["a0realaaaa.mp4"]}))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["features", "--dataset", "dfdc", "--root", str(tree.root), "--store", str(tmp_path / "store.zarr")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and "entry 'b0fakebbbb.mp4': original" in lines[0], lines
    assert not (tmp_path / "store.zarr").exists()
