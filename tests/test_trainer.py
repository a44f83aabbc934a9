import json
import math

import cv2
import numpy as np
import pytest
import torch

from cli import main
from conftest import FIXTURES, needs_fixtures, run_cli
from pipeline.profiles import get_profile
from stores import write_tiny_store
from trainer import checkpoint
from trainer.dataset import open_split
from trainer.detector import Detector
from trainer.evaluate import loader, score, to_inputs
from trainer.loop import TrainRequest, make_optimizer, train
from trainer.losses import LOSSES
from trainer.metrics import binary_metrics, per_video
from trainer.registry import VARIANTS

CPU = torch.device("cpu")
# The test machine's cores are shared: OpenMP threads spinning for a core that another process
# holds make small tensors tens of times slower, while one thread stays steady.
torch.set_num_threads(1)
TINY = (32, 32)
# The smallest inputs each family runs at: 3D ResNets halve time three times; Xception needs
# 2x2 features for batch norm of two samples.
SMALL_INPUTS = {
    "flowlstm": {"size": "32x32", "clip_length": "4"},
    "gml": {"size": "64x64", "clip_length": "4"},
    "xception": {"size": "64x64"},
    **{name: {"size": "32x32", "clip_length": "4"} for name in ("r3d18", "r3d50", "r3d101")},
}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.zarr"
    return write_tiny_store(path, get_profile("ofcnn", ["crop.size=32x32"]), frames=16, size=TINY, splits={"train": 1, "val": 1})


def small_spec(name: str):
    variant = VARIANTS[name]
    fields = SMALL_INPUTS.get(name, {"size": "32x32"} if variant.spec.size else {})
    return variant.spec.with_text_overrides("input", fields)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_registered_model_takes_a_training_step_and_evaluates(tiny_store, name):
    variant, spec = VARIANTS[name], small_spec(name)
    torch.manual_seed(0)
    detector = Detector(variant, spec)
    batch = next(iter(loader(open_split(str(tiny_store), spec, "train"), 2, 0, torch.Generator().manual_seed(0))))
    units = 2 * (spec.clip_length if variant.level == "frame" else 1)
    loss = LOSSES[variant.recipe.loss][0]

    detector.train()
    output = detector(*to_inputs(batch, CPU))
    assert output["logits"].shape == ((units,) if variant.head == "sigmoid" else (units, 2))
    value = loss(output, batch["label"].repeat_interleave(units // 2), torch.ones(2))
    assert value.ndim == 0 and torch.isfinite(value)
    before = [p.detach().clone() for p in detector.parameters()]
    optimizer = make_optimizer(variant.recipe, list(detector.parameters()))
    value.backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, detector.parameters())), "the step changed no weight"

    val, val_loss = score(detector, open_split(str(tiny_store), spec, "val"), 2, CPU, loss=loss, class_weights=torch.ones(2))
    assert math.isfinite(val_loss)
    assert val.p.shape == val.labels.shape and ((val.p >= 0) & (val.p <= 1)).all()
    videos = per_video(val, variant.video_rule, 0.5)
    metrics = binary_metrics(videos.p, videos.labels, 0.5)
    assert metrics["n"] == 2 and metrics["n_real"] == 1 and 0 <= metrics["auc"] <= 1


@pytest.fixture(scope="module")
def trained_ofcnn(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ofcnn"
    result = train(TrainRequest(str(tiny_store), "ofcnn", str(out), recipe={"epochs": 2, "batch_size": 2},
                                inputs=("size=32x32",), progress=False))
    return result


def test_train_keeps_best_and_last_checkpoints_and_val_figures(trained_ofcnn):
    out = trained_ofcnn.out
    assert [row["epoch"] for row in trained_ofcnn.history] == [1, 2]
    best, last = checkpoint.load(out / "best.pt"), checkpoint.load(out / "last.pt")
    assert "optimizer" in last and "optimizer" not in best
    assert best["epoch"] == trained_ofcnn.best_epoch == best["best"]["epoch"]
    assert set(best["thresholds"]) == {"unit", "video"}
    assert best["profile"]["name"] == "ofcnn" and best["profile"]["crops"][0]["size"] == [32, 32]
    for name in ("curves.png", "val/metrics.json", "val/roc.png", "val/curves.png"):
        assert (out / name).is_file(), name


def test_evaluate_writes_metrics_roc_and_curves(trained_ofcnn, tiny_store, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = run_cli("evaluate", "--checkpoint", str(trained_ofcnn.out / "best.pt"), "--store", str(tiny_store),
                     "--split", "val", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["thresholds_from"] == "val"
    for level in ("clip", "video"):
        assert set(metrics[level]) >= {"accuracy", "auc", "f1", "precision", "recall", "threshold"}
    assert metrics["video"]["n"] == 2 and metrics["clip"]["n"] == 2
    for figure in ("roc.png", "curves.png"):
        image = cv2.imread(str(tmp_path / figure))
        assert image is not None and image.shape[0] >= 300, figure
    assert "video" in result.stdout and "auc" in result.stdout


@needs_fixtures
def test_predict_prints_a_probability_for_a_real_video(trained_ofcnn, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    missing = str(tmp_path / "missing.mp4")
    result = run_cli("predict", "--checkpoint", str(trained_ofcnn.out / "best.pt"), "--json",
                     str(FIXTURES / "Megamind.avi"), missing, timeout=300)
    assert result.returncode == 0, result.stderr
    megamind, absent = [json.loads(line) for line in result.stdout.splitlines()]
    assert megamind["status"] == "done" and 0 <= megamind["p_fake"] <= 1 and megamind["units"] >= 1
    assert isinstance(megamind["fake"], bool)
    assert absent["status"] == "failed" and absent["p_fake"] is None and "no such file" in absent["error"].lower()


def test_seeded_training_repeats_exactly_and_resume_continues_the_same_run(tiny_store, tmp_path):
    def run(out, epochs, resume=False, seed=0):
        return train(TrainRequest(str(tiny_store), "meso4", str(tmp_path / out), recipe={"epochs": epochs, "batch_size": 8},
                                  inputs=("size=32x32",), seed=seed, resume=resume, progress=False))

    straight = run("straight", 2)
    run("resumed", 1)
    resumed = run("resumed", 2, resume=True)
    other_seed = run("other", 2, seed=1)
    weights = {name: checkpoint.load(tmp_path / name / "last.pt")["weights"] for name in ("straight", "resumed", "other")}
    assert all(torch.equal(weights["straight"][k], weights["resumed"][k]) for k in weights["straight"])
    assert straight.history[1]["train_loss"] == resumed.history[1]["train_loss"]
    assert not all(torch.equal(weights["straight"][k], weights["other"][k]) for k in weights["straight"])
    assert other_seed.history[0]["train_loss"] != straight.history[0]["train_loss"]


def test_export_deepfakebench_layout(tiny_store, tmp_path):
    from feature_store import FeatureStore, video_key

    out = tmp_path / "dfb"
    main(["export", "--store", str(tiny_store), "--format", "deepfakebench", "--out", str(out)])
    index = json.loads((out / "tiny.json").read_text())
    assert set(index) == {"tiny"} and set(index["tiny"]) == {"tiny_real", "tiny_fake"}
    store = FeatureStore(tiny_store, mode="r")
    videos = 0
    for label, splits in index["tiny"].items():
        assert set(splits) == {"train", "val", "test"}
        for split, entries in splits.items():
            for video, entry in entries.items():
                videos += 1
                assert entry["label"] == label
                group = store.video(video)
                assert group.attrs["split"] == split and group.attrs["label"] == (label == "tiny_fake")
                frame_index = group["frame_index"][...]
                assert [int(p.rsplit("/", 1)[1][:-4]) for p in entry["frames"]] == frame_index.tolist()
                for t, path in enumerate(entry["frames"]):
                    assert path.startswith(str(out / "frames" / video))
                    png = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
                    assert np.array_equal(png, group["frames"][t])
                    # DeepfakeBench's loader finds landmarks by this replacement.
                    landmarks = np.load(path.replace("frames", "landmarks").replace(".png", ".npy"))
                    assert landmarks.shape == (68, 2) and np.array_equal(landmarks, group["landmarks"][t])
    assert videos == 4 and video_key("real/id00") in index["tiny"]["tiny_real"]["train"]


@pytest.mark.parametrize(
    "args, named",
    [
        (["train", "--store", "{store}", "--model", "ofcnn9", "--out", "{tmp}/r"], "ofcnn9"),
        (["train", "--store", "{tmp}/none.zarr", "--model", "ofcnn", "--out", "{tmp}/r"], "none.zarr"),
        (["train", "--store", "{store}", "--model", "ofcnn", "--out", "{tmp}/r", "--loss", "ce"], "--loss ce"),
        (["train", "--store", "{store}", "--model", "ofcnn", "--out", "{tmp}/r", "--input", "clip_length=40"], "windows of 40 frames"),
        (["train", "--store", "{store}", "--model", "ofcnn", "--out", "{tmp}/r", "--input", "colour=grey"], "input.colour"),
        (["train", "--store", "{store}", "--model", "ofcnn", "--out", "{tmp}/r", "--resume"], "--resume"),
        (["evaluate", "--checkpoint", "{tmp}/nothing.pt", "--store", "{store}"], "nothing.pt"),
        (["predict", "--checkpoint", "{store}/manifest.csv", "a.mp4"], "manifest.csv"),
        (["export", "--store", "{store}", "--format", "deepfakebench", "--out", "{tmp}/frames"], "frames"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(tiny_store, tmp_path, capsys, args, named):
    with pytest.raises(SystemExit) as exit_info:
        main([a.replace("{store}", str(tiny_store)).replace("{tmp}", str(tmp_path)) for a in args])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
