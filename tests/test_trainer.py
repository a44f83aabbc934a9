import json
import math
import os
import time

import cv2
import numpy as np
import pytest
import torch

from cli import main
from conftest import FIXTURES, needs_fixtures, run_cli
from trainer import checkpoint
from trainer.dataset import open_split
from trainer.detector import Detector
from trainer.evaluate import loader, score, to_inputs
from trainer.loop import TrainRequest, make_optimizer, recompute_batch_norm, train
from trainer.losses import LOSSES
from trainer.metrics import binary_metrics, per_video
from trainer.registry import VARIANTS

CPU = torch.device("cpu")
# The test machine's cores are shared: OpenMP threads spinning for a core that another process
# holds make small tensors tens of times slower, while one thread stays steady.
torch.set_num_threads(1)
# The smallest inputs each family runs at: 3D ResNets halve time three times; Xception needs
# 2x2 features for batch norm of two samples.
SMALL_INPUTS = {
    "gml": {"size": "64x64", "clip_length": "4"},
    "xception": {"size": "64x64"},
    **{name: {"size": "32x32", "clip_length": "4"}
       for name in ("flowlstm", "flowlstm_vgg16", "flowlstm_efficientnet_b7", "flowcnn", "cnn3d_video", "r3d18", "r3d50", "r3d101")},
}


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
    assert metrics["split"] == "val" and metrics["thresholds_from"].startswith("checkpoint ")
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


def test_predict_names_a_video_it_cannot_score(trained_ofcnn, tmp_path, capsys):
    main(["predict", "--checkpoint", str(trained_ofcnn.out / "best.pt"), str(tmp_path / "gone.mp4")])
    line = capsys.readouterr().out.strip()
    assert line.startswith("-") and "failed" in line and "gone.mp4" in line


def test_predict_applies_the_limits_of_features(trained_ofcnn, tmp_path):
    """A video over the decode limits is refused, one that hangs its decoder is given up on
    after the time limit, and predict goes on to the others."""
    from pipeline.predict import predict
    from test_decode_limits import _huge_png_video

    huge = _huge_png_video(tmp_path / "huge.mov")
    # A FIFO nobody writes to: opening it blocks inside FFmpeg, in C, for ever.
    os.mkfifo(tmp_path / "stuck.mp4")
    started = time.monotonic()
    huge_result, stuck = predict(str(trained_ofcnn.out / "best.pt"), [str(huge), str(tmp_path / "stuck.mp4")], timeout_s=3)
    assert (huge_result.status, huge_result.error.split(":")[0], huge_result.p_fake) == ("failed", "too large", None)
    assert (stuck.status, stuck.error, stuck.p_fake) == ("failed", "timeout: decode still running after 3 s", None)
    assert time.monotonic() - started < 60


def test_evaluate_uses_the_training_stores_thresholds_on_a_store_without_val(trained_ofcnn, tmp_path):
    from pipeline.profiles import get_profile
    from stores import write_tiny_store
    from trainer.evaluate import EvaluateRequest, evaluate

    target = write_tiny_store(tmp_path / "other.zarr", get_profile("ofcnn", ["crop.size=32x32"]), frames=16, size=(32, 32),
                              splits={"test": 1}, seed=5)
    best = trained_ofcnn.out / "best.pt"
    metrics = evaluate(EvaluateRequest(str(best), str(target), "test", str(tmp_path / "out"), "cpu"))
    thresholds = checkpoint.load(best)["thresholds"]
    assert metrics["clip"]["threshold"] == thresholds["unit"] and metrics["video"]["threshold"] == thresholds["video"]
    assert metrics["thresholds_from"].startswith(f"checkpoint {best}") and "tiny.zarr" in metrics["thresholds_from"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["thresholds_from"] == metrics["thresholds_from"]
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoint", str(best), "--store", str(target), "--thresholds-from", "val", "--out", str(tmp_path / "v")])
    assert exit_info.value.code == 2


def train_meso4(store, out, epochs, resume=False, seed=0, **recipe):
    return train(TrainRequest(str(store), "meso4", str(out), recipe={"epochs": epochs, "batch_size": 8, "class_weights": True, **recipe},
                              inputs=("size=32x32",), seed=seed, resume=resume, progress=False))


@pytest.fixture(scope="module")
def trained_meso4(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "meso4"
    train_meso4(tiny_store, out, 2)
    return out


def test_seeded_training_repeats_exactly_and_resume_continues_the_same_run(tiny_store, trained_meso4, tmp_path):
    train_meso4(tiny_store, tmp_path / "resumed", 1)
    resumed = train_meso4(tiny_store, tmp_path / "resumed", 2, resume=True)
    other_seed = train_meso4(tiny_store, tmp_path / "other", 2, seed=1)
    straight = checkpoint.load(trained_meso4 / "last.pt")
    weights = {"straight": straight["weights"]} | {
        name: checkpoint.load(tmp_path / name / "last.pt")["weights"] for name in ("resumed", "other")}
    assert all(torch.equal(weights["straight"][k], weights["resumed"][k]) for k in weights["straight"])
    assert straight["history"][1]["train_loss"] == resumed.history[1]["train_loss"]
    assert not all(torch.equal(weights["straight"][k], weights["other"][k]) for k in weights["straight"])
    assert other_seed.history[0]["train_loss"] != straight["history"][0]["train_loss"]


def test_each_epoch_leaves_batch_norm_with_the_statistics_of_its_training_batches(tiny_store, trained_meso4, tmp_path):
    saved = checkpoint.load(trained_meso4 / "last.pt")
    spec = small_spec("meso4")
    detector = Detector(VARIANTS["meso4"], spec)
    detector.load_state_dict(saved["weights"])
    norm = next(module for module in detector.modules() if isinstance(module, torch.nn.BatchNorm2d))
    seen = []
    norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    # The last epoch's batches (seed 0, epoch 2), in its order, as train drew them.
    batches = list(loader(open_split(str(tiny_store), spec, "train"), 8, 0, torch.Generator().manual_seed(2)))

    recompute_batch_norm(detector, batches, CPU, amp=False)

    assert len(seen) == 4 and all(len(inputs) == 8 for inputs in seen)
    torch.testing.assert_close(norm.running_mean, torch.cat(seen).mean(dim=(0, 2, 3)))
    assert norm.momentum == 0.1, "the running average's momentum is restored for training"
    # What the run saved is this average, not the running one that trails the weights.
    mean_key = next(key for key in saved["weights"] if key.endswith("running_mean"))
    torch.testing.assert_close(saved["weights"][mean_key], norm.running_mean)

    train_meso4(tiny_store, tmp_path / "running", 2, bn_batches=0)
    running = checkpoint.load(tmp_path / "running" / "last.pt")["weights"]
    assert not torch.allclose(running[mean_key], saved["weights"][mean_key]), "--bn-batches 0 keeps the running averages"


def test_a_recipe_in_iterations_trains_the_whole_epochs_that_make_them(tiny_store, tmp_path):
    # 32 training frames in batches of 8: 4 steps an epoch.
    result = train(TrainRequest(str(tiny_store), "meso4", str(tmp_path / "run"), recipe={"iterations": 5, "batch_size": 8},
                                inputs=("size=32x32",), progress=False))
    assert len(result.history) == 2
    resumed = train(TrainRequest(str(tiny_store), "meso4", str(tmp_path / "run"), recipe={"epochs": 3},
                                 inputs=("size=32x32",), resume=True, progress=False))
    assert len(resumed.history) == 3, "--epochs on resume replaces the iteration count"


def test_classes_weigh_alike_in_an_imbalanced_store(tmp_path):
    from pipeline.profiles import get_profile
    from stores import write_tiny_store

    store = write_tiny_store(tmp_path / "s.zarr", get_profile("ofcnn", ["crop.size=32x32"]), frames=8, size=(32, 32),
                             splits={"train": 1, "val": 1}, fakes=3)
    train_meso4(store, tmp_path / "run", 1)
    # 8 real and 24 fake frames: each class weighs n / (2 n_class).
    assert checkpoint.load(tmp_path / "run" / "best.pt")["class_weights"] == pytest.approx([2.0, 2 / 3])


def test_a_loss_that_is_not_a_number_stops_the_run_with_a_message(tmp_path, capsys):
    from feature_store import FeatureStore, manifest, schema, video_key
    from pipeline.profiles import get_profile
    from stores import write_tiny_store

    store = write_tiny_store(tmp_path / "s.zarr", get_profile("ofcnn", ["crop.size=32x32"]), frames=16, size=(32, 32),
                             splits={"train": 1, "val": 1})
    flow = np.full((1, 16, 32, 32, 2), np.nan, np.float16)
    opened = FeatureStore(store)
    key = video_key("fake/id00")
    opened.update_video(key, opened.entry(key), {schema.FLOW: schema.flow_array(flow, per_face=True)}, chunk_frames=16)
    manifest.rebuild(opened)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--store", str(store), "--model", "ofcnn", "--out", str(tmp_path / "run"), "--input", "size=32x32"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "dfprep: the training loss became nan; a lower --lr may help"


def test_mixed_precision_trains_on_the_cpu(tiny_store, tmp_path):
    result = train(TrainRequest(str(tiny_store), "meso4", str(tmp_path), recipe={"epochs": 1, "batch_size": 8},
                                inputs=("size=32x32",), amp=True, progress=False))
    assert math.isfinite(result.history[0]["train_loss"]) and math.isfinite(result.history[0]["val_loss"])


def kinetics_resnet_state_dict(depth: int) -> dict[str, torch.Tensor]:
    """A state dict in the layout of the public Kinetics-400 3D ResNets (kenshohara/3D-ResNets-PyTorch,
    resnet-50/101-kinetics.pth): 7x7x7 conv1, bottlenecks with downsample.0/1, fc of 400, saved
    from DataParallel (`module.`) under `state_dict`. Random values with a seed."""
    generator = torch.Generator().manual_seed(depth)
    tensors: dict[str, torch.Tensor] = {}

    def bn(name, width):
        tensors.update({f"{name}.weight": torch.rand(width, generator=generator), f"{name}.bias": torch.rand(width, generator=generator),
                        f"{name}.running_mean": torch.rand(width, generator=generator),
                        f"{name}.running_var": torch.rand(width, generator=generator) + 0.5,
                        f"{name}.num_batches_tracked": torch.tensor(7)})

    tensors["conv1.weight"] = torch.randn(64, 3, 7, 7, 7, generator=generator) * 0.01
    bn("bn1", 64)
    channels = 64
    for layer, blocks in enumerate({50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth], start=1):
        width = 64 * 2 ** (layer - 1)
        for block in range(blocks):
            name = f"layer{layer}.{block}"
            for conv, shape in (("conv1", (width, channels, 1, 1, 1)), ("conv2", (width, width, 3, 3, 3)), ("conv3", (width * 4, width, 1, 1, 1))):
                tensors[f"{name}.{conv}.weight"] = torch.randn(shape, generator=generator) * 0.01
                bn(f"{name}.bn{conv[-1]}", shape[0])
            if block == 0:
                tensors[f"{name}.downsample.0.weight"] = torch.randn(width * 4, channels, 1, 1, 1, generator=generator) * 0.01
                bn(f"{name}.downsample.1", width * 4)
            channels = width * 4
    tensors["fc.weight"], tensors["fc.bias"] = torch.randn(400, 2048, generator=generator), torch.randn(400, generator=generator)
    return {"arch": f"resnet-{depth}", "state_dict": {f"module.{key}": value for key, value in tensors.items()}}


def test_kinetics_3d_resnet_weights_load_every_tensor_and_only_conv5_and_fc_train(tiny_store, tmp_path, capsys):
    published = kinetics_resnet_state_dict(50)
    torch.save(published, tmp_path / "resnet-50-kinetics.pth")
    train(TrainRequest(str(tiny_store), "r3d50", str(tmp_path / "run"), recipe={"epochs": 1, "batch_size": 2},
                       inputs=("size=32x32", "clip_length=4"), pretrained=str(tmp_path / "resnet-50-kinetics.pth"), progress=False))
    assert "pretrained: 318 of 320 tensors loaded" in capsys.readouterr().out, "all but the 400-class fc"
    weights = checkpoint.load(tmp_path / "run" / "last.pt")["weights"]
    given = {key.removeprefix("module."): value for key, value in published["state_dict"].items()}
    assert set(given) == {key.removeprefix("net.net.") for key in weights if key.startswith("net.net.")}, "the same names"
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer3.5.conv2.weight"):
        assert torch.equal(weights[f"net.net.{key}"], given[key]), f"frozen {key} keeps the given weights"
    assert not torch.equal(weights["net.net.layer4.2.conv3.weight"], given["layer4.2.conv3.weight"]), "conv5 fine-tuned"
    assert weights["net.net.fc.weight"].shape == (2, 2048)


def test_kinetics_3d_resnet_101_weights_fit_and_a_mismatch_is_one_line(tiny_store, tmp_path, capsys):
    from trainer.detector import Detector
    from trainer.loop import _load_pretrained

    published = kinetics_resnet_state_dict(101)
    torch.save(published, tmp_path / "resnet-101-kinetics.pth")
    variant = VARIANTS["r3d101"]
    detector = Detector(variant, variant.spec)
    _load_pretrained(detector, variant, str(tmp_path / "resnet-101-kinetics.pth"))
    assert "pretrained: 624 of 626 tensors loaded" in capsys.readouterr().out
    assert torch.equal(detector.net.net.layer3[22].conv2.weight, published["state_dict"]["module.layer3.22.conv2.weight"])

    published["state_dict"]["module.conv1.weight"] = torch.zeros(64, 3, 3, 7, 7)  # a 3-frame stem: not this network
    torch.save(published, tmp_path / "other.pth")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--store", str(tiny_store), "--model", "r3d101", "--out", str(tmp_path / "r"), "--input", "size=32x32",
              "--input", "clip_length=4", "--pretrained", str(tmp_path / "other.pth")])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "conv1.weight (64, 3, 3, 7, 7) where r3d101 has (64, 3, 7, 7, 7)" in line and "other.pth" in line


def test_imagenet_resnet50_weights_load_and_only_its_upper_layers_train_with_augmentation(tiny_store, tmp_path):
    import torchvision

    assert VARIANTS["resnet50"].augment
    published = torchvision.models.resnet50(weights=None).state_dict()  # shaped like ImageNet weights
    torch.save(published, tmp_path / "resnet50.pth")
    train(TrainRequest(str(tiny_store), "resnet50", str(tmp_path / "run"), recipe={"epochs": 1, "batch_size": 16},
                       inputs=("size=32x32",), pretrained=str(tmp_path / "resnet50.pth"), progress=False))
    weights = checkpoint.load(tmp_path / "run" / "last.pt")["weights"]
    assert torch.equal(weights["net.trunk.conv1.weight"], published["conv1.weight"])
    assert torch.equal(weights["net.trunk.layer3.5.conv3.weight"], published["layer3.5.conv3.weight"])
    assert not torch.equal(weights["net.trunk.layer4.2.conv3.weight"], published["layer4.2.conv3.weight"])


def test_pretrained_weights_load_by_name_and_only_the_top_layers_train(tiny_store, tmp_path):
    import torchvision

    published = torchvision.models.video.r3d_18(num_classes=400).state_dict()  # shaped like Kinetics weights
    published["stem.1.running_mean"] = torch.rand(64, generator=torch.Generator().manual_seed(0))
    torch.save(published, tmp_path / "r3d_18.pth")
    train(TrainRequest(str(tiny_store), "r3d18", str(tmp_path / "run"), recipe={"epochs": 1, "batch_size": 2},
                       inputs=("size=32x32", "clip_length=4"), pretrained=str(tmp_path / "r3d_18.pth"), progress=False))
    weights = checkpoint.load(tmp_path / "run" / "last.pt")["weights"]
    assert torch.equal(weights["net.net.stem.0.weight"], published["stem.0.weight"]), "frozen layers keep the given weights"
    assert torch.equal(weights["net.net.stem.1.running_mean"], published["stem.1.running_mean"]), "and their batch statistics"
    assert not torch.equal(weights["net.net.layer4.1.conv2.1.running_mean"], published["layer4.1.conv2.1.running_mean"])
    assert torch.equal(weights["net.net.layer3.1.conv2.0.weight"], published["layer3.1.conv2.0.weight"])
    assert not torch.equal(weights["net.net.layer4.1.conv2.0.weight"], published["layer4.1.conv2.0.weight"])
    assert weights["net.net.fc.weight"].shape == (2, 512), "the 400-class head is not loaded into a 2-class one"


@pytest.mark.parametrize(
    "args, named",
    [
        (["train", "--store", "{store}", "--model", "ofcnn9", "--out", "{tmp}/r"], "ofcnn9"),
        (["train", "--store", "{tmp}/none.zarr", "--model", "ofcnn", "--out", "{tmp}/r"], "none.zarr"),
        (["train", "--store", "{store}", "--model", "ofcnn", "--out", "{tmp}/r", "--loss", "ce"], "--loss ce"),
        (["train", "--store", "{store}", "--model", "ofcnn", "--out", "{tmp}/r", "--input", "clip_length=40"], "windows of 40 frames"),
        (["train", "--store", "{store}", "--model", "ofcnn", "--out", "{tmp}/r", "--input", "colour=grey"], "input.colour"),
        (["train", "--store", "{store}", "--model", "ofcnn", "--out", "{tmp}/r", "--resume"], "--resume"),
        (["train", "--store", "{store}", "--model", "meso4", "--out", "{run}", "--resume", "--lr", "0.5"], "only --epochs"),
        (["train", "--store", "{store}", "--model", "meso4", "--out", "{tmp}/r", "--bn-batches", "-1"], "--bn-batches"),
        (["train", "--store", "{store}", "--model", "meso4", "--out", "{run}"], "holds a run already"),
        (["evaluate", "--checkpoint", "{tmp}/nothing.pt", "--store", "{store}"], "nothing.pt"),
        (["predict", "--checkpoint", "{store}/manifest.csv", "a.mp4"], "manifest.csv"),
        (["export", "--store", "{store}", "--format", "deepfakebench", "--out", "{tmp}/x", "--name", "FF-DF"], "FF-DF"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(tiny_store, trained_meso4, tmp_path, capsys, args, named):
    with pytest.raises(SystemExit) as exit_info:
        main([a.replace("{store}", str(tiny_store)).replace("{tmp}", str(tmp_path)).replace("{run}", str(trained_meso4)) for a in args])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
