"""`features` and `status` through the command line on a tree of every dataset, and the
one-line messages for partial trees. One LocalCluster serves every run, in this process."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess

import pytest
from distributed import LocalCluster

import dataset_trees as trees
from conftest import ROOT
from conftest import run_here as run
from source_conformance import remove


@pytest.fixture(scope="module")
def scheduler():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def every_tree(tmp_path_factory, tiny_video):
    return {tree.dataset: tree for tree in trees.all_trees(tmp_path_factory.mktemp("trees"), tiny_video)}


def features(tree, store, scheduler, capsys):
    # Frame crops: no face detection, so every tiny video ends `done` with its arrays written.
    return run(capsys, "features", "--dataset", tree.dataset, "--root", str(tree.root), "--store", str(store),
               "--scheduler", scheduler, "--set", "crop.mode=frame", "--set", "crop.size=32x32", *tree.cli_options())


@pytest.mark.parametrize("dataset", ["ffpp", "celebdf", "celebdf-v1", "dfdc", "dfdcp", "deeperforensics", "folder"])
def test_features_then_status_shows_every_videos_split_and_label(every_tree, scheduler, capsys, tmp_path, dataset):
    tree = every_tree[dataset]
    code, out, err = features(tree, tmp_path / "store.zarr", scheduler, capsys)
    assert code == 0, err
    # The table of records comes before the run's summary.
    assert out.index(f"{dataset}: {len(tree.videos)} videos") < out.index("processed")
    assert re.search(rf"^all\s+\d+\s+\d+\s+{len(tree.videos)}$", out, re.MULTILINE), out
    assert re.search(rf"^done\s+{len(tree.videos)}$", out, re.MULTILINE), out
    warnings = [line for line in err.splitlines() if line.startswith("dfprep: warning: ")]
    sharing = ", ".join(trees.CELEBDF_SHARING_TEST_IDENTITIES)
    assert warnings[:1] == ([f"dfprep: warning: {len(trees.CELEBDF_SHARING_TEST_IDENTITIES)} train or val videos show an identity of a "
                             f"listed test video (Celeb-DF's standard protocol; --identity-disjoint leaves them out) (e.g. {sharing})"]
                            if dataset.startswith("celebdf") else [])

    code, out, _ = run(capsys, "status", "--store", str(tmp_path / "store.zarr"), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(row["video_id"] for row in rows) == sorted(tree.videos)
    for row in rows:
        label, splits = tree.videos[row["video_id"]]
        assert row["label"] == label and row["split"] in splits.split("|") and row["status"] == "done", row


@pytest.mark.parametrize(
    "dataset, missing, named",
    [
        ("ffpp", "manipulated_sequences/FaceSwap", "missing manipulated_sequences/FaceSwap/c23/videos/"),
        ("ffpp", "splits/val.json", "missing splits/val.json (or val.json)"),
        ("celebdf", "List_of_testing_videos.txt", "missing List_of_testing_videos.txt"),
        ("dfdc", "dfdc_train_part_2/metadata.json", "missing dfdc_train_part_2/metadata.json"),
        ("dfdcp", "dataset.json", "missing dataset.json"),
        ("deeperforensics", "lists/splits/test.txt", "missing lists/splits/test.txt"),
    ],
)
def test_a_partial_tree_is_a_one_line_error_naming_the_missing_piece(tmp_path, tiny_video, capsys, dataset, missing, named):
    tree = next(tree for tree in trees.all_trees(tmp_path / "trees", tiny_video) if tree.dataset == dataset)
    remove(tree, missing)
    code, out, err = run(capsys, "features", "--dataset", dataset, "--root", str(tree.root), "--store", str(tmp_path / "s.zarr"), *tree.cli_options())
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and named in err and "; found " in err, err
    assert not (tmp_path / "s.zarr").exists()


def test_a_fake_whose_original_is_missing_is_a_warning_and_the_run_goes_on(tmp_path, tiny_video, scheduler, capsys):
    tree = trees.dfdc(tmp_path / "dfdc", tiny_video)
    (tree.root / "dfdc_train_part_2" / "g2realgggg.mp4").unlink()
    code, out, err = features(tree, tmp_path / "store.zarr", scheduler, capsys)
    assert code == 0
    assert "dfprep: warning: 1 fakes whose original video is not among the videos found (e.g. dfdc_train_part_2/h2fakehhhh <- g2realgggg)" in err.splitlines()
    assert re.search(rf"^done\s+{len(tree.videos) - 1}$", out, re.MULTILINE), out


@pytest.mark.parametrize(
    "option, named",
    [(["--comp", "c30"], ["c30", "c23"]), (["--split-ratios", "0", "1", "1"], ["--split-ratios", "train > 0"]),
     (["--methods", "Deepfakes,FaceSwapp"], ["FaceSwapp", "NeuralTextures"])],
)
def test_a_bad_dataset_option_is_a_one_line_error(tmp_path, tiny_video, capsys, option, named):
    tree = trees.ffpp(tmp_path / "ffpp", tiny_video)
    code, _, err = run(capsys, "features", "--dataset", "ffpp", "--root", str(tree.root), "--store", str(tmp_path / "s"), *option)
    assert code == 2 and len(err.splitlines()) == 1 and all(name in err for name in named), err


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_features_passes_the_dataset_options():
    result = subprocess.run(
        ["make", "-n", "features", "DATASET=deeperforensics", "ROOT=/data/DeeperForensics-1.0", "STORE=stores/df.zarr",
         "PROFILE=r3d", "FFPP_ROOT=/data/ffpp", "COMP=c40", "METHODS=end_to_end"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    assert ("dfprep features --dataset deeperforensics --root /data/DeeperForensics-1.0 --store stores/df.zarr --profile r3d "
            "--comp c40 --methods end_to_end --ffpp-root /data/ffpp") in result.stdout
