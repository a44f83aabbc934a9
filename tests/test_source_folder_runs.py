"""`folder` datasets through the commands: a folder of unlabeled videos (features, status,
export, predict work; train refuses) and a labels CSV naming train and test only (val is
carved from train, and the store trains). One LocalCluster serves every run, in this process."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from distributed import LocalCluster

import cli
import dataset_trees as trees
from conftest import run_here as run
from trainer.loop import TrainRequest, train

# Frame crops: no face detection, so every tiny video ends `done`.
CHEAP = ("--set", "crop.mode=frame", "--set", "crop.size=32x32")


@pytest.fixture(scope="module")
def scheduler():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def csv_store(tmp_path_factory, tiny_video, scheduler):
    """Four train groups and one test group (a real and a fake each), no val."""
    root = tmp_path_factory.mktemp("csv")
    rows = [(f"g{g}/{kind}.mp4", label, "test" if g == 0 else "train", f"g{g}") for g in range(5) for label, kind in enumerate(("real", "fake"))]
    for path, *_ in rows:
        trees.link(tiny_video, root / path)
    (root / "labels.csv").write_text("path,label,split,group\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    store = tmp_path_factory.mktemp("stores") / "csv.zarr"
    cli.main(["features", "--dataset", "folder", "--root", str(root), "--labels", str(root / "labels.csv"),
              "--store", str(store), "--scheduler", scheduler, *CHEAP])
    return store


@pytest.fixture(scope="module")
def trained(csv_store, tmp_path_factory):
    torch.set_num_threads(1)
    return train(TrainRequest(str(csv_store), "meso4", str(tmp_path_factory.mktemp("runs") / "meso4"),
                              recipe={"epochs": 1, "batch_size": 2}, inputs=("size=32x32",), progress=False))


def test_a_csv_without_val_builds_a_store_that_trains(csv_store, trained, capsys):
    code, out, _ = run(capsys, "status", "--store", str(csv_store), "--json")
    splits = {row["video_id"]: row["split"] for row in map(json.loads, out.splitlines())}
    assert code == 0 and {split for vid, split in splits.items() if vid.startswith("g0/")} == {"test"}
    val = {vid.split("/")[0] for vid, split in splits.items() if split == "val"}
    assert len(val) == 1 and all(splits[f"{group}/real"] == splits[f"{group}/fake"] == "val" for group in val)
    assert trained.best_epoch == 1 and (trained.out / "best.pt").is_file()
    assert trained.val_metrics["video"]["n"] == 2


def test_an_unlabeled_folder_runs_through_every_command_but_train(tmp_path, tiny_video, scheduler, trained, capsys):
    root = tmp_path / "screen"
    for relative in ("a.mp4", "day1/b.mp4"):
        trees.link(tiny_video, root / relative)
    store = tmp_path / "store.zarr"
    code, out, err = run(capsys, "features", "--dataset", "folder", "--root", str(root), "--store", str(store), "--scheduler", scheduler, *CHEAP)
    assert code == 0, err
    assert "unlabeled" in out.splitlines()[1] and "warning" not in err

    code, out, _ = run(capsys, "status", "--store", str(store), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted((row["video_id"], row["label"], row["split"], row["status"]) for row in rows) == [
        ("a", -1, "test", "done"), ("day1/b", -1, "test", "done")]
    code, out, _ = run(capsys, "status", "--store", str(store))
    assert code == 0 and "  test   done: 0 real, 0 fake, 2 unlabeled" in out.splitlines()

    code, out, err = run(capsys, "export", "--store", str(store), "--format", "deepfakebench", "--out", str(tmp_path / "dfb"))
    assert code == 0, err
    index = json.loads((tmp_path / "dfb/preprocessing/dataset_json/folder.json").read_text())["folder"]
    assert set(index) == {"folder_unlabeled"} and sorted(index["folder_unlabeled"]["test"]) == ["a", "day1/b"]
    assert "2 unlabeled videos are listed as folder_unlabeled" in out

    code, out, err = run(capsys, "predict", "--checkpoint", str(trained.out / "best.pt"), "--json", str(root / "a.mp4"))
    assert code == 0 and json.loads(out)["status"] == "done", err

    code, out, err = run(capsys, "train", "--store", str(store), "--model", "meso4", "--out", str(tmp_path / "run"), "--input", "size=32x32")
    assert code == 2 and err.strip() == (f"dfprep: error: --store {store}: every video is unlabeled (label -1); "
                                         "training and metrics need labels (a --labels CSV gives them)")


def test_train_refuses_unlabeled_videos_a_csv_puts_in_train(tmp_path, tiny_video, scheduler, capsys):
    root = tmp_path / "mixed"
    rows = [("a.mp4", "0", "train"), ("b.mp4", "1", "train"), ("c.mp4", "", "train"), ("d.mp4", "0", "val"), ("e.mp4", "1", "val")]
    for path, *_ in rows:
        trees.link(tiny_video, root / path)
    (root / "labels.csv").write_text("path,label,split\n" + "".join(",".join(row) + "\n" for row in rows))
    store = tmp_path / "store.zarr"
    code, _, err = run(capsys, "features", "--dataset", "folder", "--root", str(root), "--labels", str(root / "labels.csv"),
                       "--store", str(store), "--scheduler", scheduler, *CHEAP)
    assert code == 0, err
    code, _, err = run(capsys, "train", "--store", str(store), "--model", "meso4", "--out", str(tmp_path / "run"), "--input", "size=32x32")
    assert code == 2 and err.strip() == (f"dfprep: error: --store {store}: 1 train videos are unlabeled (label -1), e.g. c; "
                                         "training and metrics need labels (a --labels CSV gives them)")
