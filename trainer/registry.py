"""The detector registry: every published variant with its network, the input it declares,
its output head and its training recipe. A value the variant's paper gives is the paper's;
every other one is listed in the variant's `chosen`, with where it comes from, and `dfprep
models` shows which is which. A variant that differs only by backbone or depth is an entry
here, not a new module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import timm
from torch import nn

from stages.config import StageConfig, check
from stages.errors import ConfigError
from trainer.dataset import ClipSpec
from trainer.losses import LOSSES
from trainer.models.backbones import RESNET50_FEATURES, resnet50_trunk
from trainer.models.flowlstm import FlowLSTM
from trainer.models.frame import ImageClassifier, TwoStreamFrame
from trainer.models.gml import MotionConsistencyNet
from trainer.models.meso import MesoNet
from trainer.models.ofcnn import OpticalFlowCNN
from trainer.models.r3d import R3D
from trainer.models.video import CNNRNN, TwoStreamVideo

OPTIMIZERS = ("adam", "sgd")
LEVELS = ("frame", "clip")
VIDEO_RULES = ("mean", "share")
# Per-channel mean and std of [0, 1] RGB that each family was trained with.
UNIT_RANGE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
KINETICS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))


@dataclass(frozen=True)
class Recipe(StageConfig):
    """How a variant trains. `iterations` > 0 trains as many epochs as make at least that many
    optimiser steps (a paper that counts iterations); 0 trains `epochs`. `class_weights`
    weighs each class n / (2 n_class) in the loss. `bn_batches` training batches set the
    batch-norm statistics before each val pass (0: keep the running averages); no paper sets
    it, see `trainer.loop`."""

    loss: str
    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    class_weights: bool = False
    iterations: int = 0
    bn_batches: int = 100

    def __post_init__(self):
        check(self.loss in LOSSES, "loss", self.loss, f"allowed: {', '.join(LOSSES)}")
        check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"allowed: {', '.join(OPTIMIZERS)}")
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        check(self.iterations >= 0, "iterations", self.iterations, "must be >= 0")
        check(self.bn_batches >= 0, "bn_batches", self.bn_batches, "must be >= 0")


# What `dfprep models` reports, per variant, as the paper's or chosen.
FIELDS = ("input", "network", "loss", "optimizer", "lr", "batch_size", "schedule", "weight_decay", "momentum",
          "class_weights", "augment", "normalisation", "pretrained", "finetune")


@dataclass(frozen=True)
class Variant:
    """One registered detector. `build` makes its network for an input spec; `level` says
    whether it scores each frame or each sample; `video_rule` turns unit scores into a video
    score (`mean` probability, or `share` of units called fake); `pretrained_module` is the
    submodule a published weight file fits, `pretrained_head` the prefixes (in that module)
    of a published head that may have another shape and is then left out, `pretrained_new`
    name fragments of tensors the published network does not have; `finetune` the parameter
    prefixes trained when such weights are given (empty: all). `table_row` is the row of the
    paper's results the variant reproduces; `chosen` maps each field of FIELDS that the paper
    does not give to the value's source."""

    name: str
    paper: str
    build: Callable[[ClipSpec], nn.Module]
    spec: ClipSpec
    recipe: Recipe
    level: str
    head: str
    normalisation: tuple[tuple[float, float, float], tuple[float, float, float]]
    profile: str
    table_row: str
    chosen: dict[str, str]
    video_rule: str = "mean"
    augment: bool = False
    pretrained_module: str = ""
    pretrained_head: tuple[str, ...] = ()
    pretrained_new: tuple[str, ...] = ()
    finetune: tuple[str, ...] = ()

    def __post_init__(self):
        assert self.level in LEVELS and self.video_rule in VIDEO_RULES
        assert LOSSES[self.recipe.loss][1] == self.head, f"{self.name}: loss {self.recipe.loss} does not read a {self.head} head"
        assert self.level == "clip" or self.spec.groups == 1
        assert set(self.chosen) <= set(FIELDS), f"{self.name}: unknown fields {set(self.chosen) - set(FIELDS)}"

    def provenance(self) -> dict[str, str]:
        """Each field of FIELDS: 'paper', or 'chosen: <source>'."""
        return {field: f"chosen: {self.chosen[field]}" if field in self.chosen else "paper" for field in FIELDS}


def _xception(spec: ClipSpec) -> nn.Module:
    trunk = timm.create_model("legacy_xception", pretrained=False, num_classes=0)
    return ImageClassifier(trunk, trunk.num_features, 2)


NOT_DESCRIBED = "the paper describes none; off"
IMAGENET_STATS = "ImageNet mean/std, the convention of the ImageNet backbone"
TRAIN_EPOCHS = "not given; 20 epochs, with the best val epoch kept"

# The 3D ResNet paper (DFDC) gives the network, input, Kinetics pre-training with the top
# layers fine-tuned, the augmentations, Kinetics normalisation, Adam and cross-entropy.
_R3D_CHOSEN = {
    "lr": "not given; 1e-4, the fine-tuning rate of the public 3D ResNets (Hara et al.)",
    "batch_size": "not given; 8 clips, what one 16 GB GPU holds at 224 px",
    "schedule": TRAIN_EPOCHS,
    "finetune": "'top layers' not named; conv5 (layer4) and fc, Hara et al.'s fine-tuning default",
    "class_weights": NOT_DESCRIBED,
    "weight_decay": "not given; 0",
    "momentum": "not used by Adam",
}


def _r3d(depth: int) -> Variant:
    chosen = dict(_R3D_CHOSEN)
    if depth == 18:
        chosen["network"] = "not a row of the paper: torchvision's R3D-18 (3x3x3 stem, no max-pool) as the small member"
    return Variant(
        f"r3d{depth}", f"3D ResNet-{depth} on 16 consecutive 224 px face frames (DFDC)",
        lambda spec: R3D(depth), ClipSpec(clip_length=16, size=(224, 224)),
        Recipe("ce", "adam", 1e-4, 8, 20), "clip", "softmax", KINETICS, "r3d",
        table_row=f"DFDC, 3D ResNet-{depth}" + (" (not in the paper)" if depth == 18 else (" (85%, F1 0.92)" if depth == 101 else " (84%)")),
        chosen=chosen, augment=True, pretrained_module="net", pretrained_head=("fc.",), finetune=("net.layer4", "net.fc"),
    )


def _meso(name: str, inception: bool) -> Variant:
    return Variant(
        name, f"{'MesoInception-4' if inception else 'Meso-4'} (MesoNet) on 256 px face crops",
        lambda spec: MesoNet(spec.size, inception=inception), ClipSpec(clip_length=1, size=(256, 256)),
        Recipe("mse", "adam", 1e-3, 75, 20), "frame", "sigmoid", UNIT_RANGE, "deepfakebench",
        table_row=f"DFDC baselines of the 3D ResNet paper, {'MesoInception-4' if inception else 'MesoNet'} (78%); MesoNet paper",
        chosen={"schedule": "not given as epochs; 20 epochs, with the best val epoch kept", "class_weights": NOT_DESCRIBED,
                "augment": "MesoNet's small zooms, flips and brightness not reproduced; off",
                "weight_decay": "not given; 0", "momentum": "not used by Adam", "pretrained": "trained from scratch in the paper; none",
                "finetune": "all layers train"},
    )


def _flowlstm(name: str, backbone: str, lstm: bool, row: str) -> Variant:
    chosen = {
        "schedule": TRAIN_EPOCHS,
        "normalisation": IMAGENET_STATS + ", applied to the HSV-coded flow images",
        "class_weights": NOT_DESCRIBED, "augment": NOT_DESCRIBED, "weight_decay": "not given; 0", "momentum": "not used by Adam",
        "finetune": "not given; all layers train",
        "network": "LSTM width not given: 512 hidden units" if lstm else "pooling not given: the flow images' features averaged over the sequence, then linear",
    }
    if backbone == "efficientnet_b7":
        chosen["pretrained"] = "the paper's Keras EfficientNet-B7 weights differ in layout; timm's efficientnet_b7 (ImageNet) files fit"
    return Variant(
        name, f"HSV-coded flow of 112 px crops (70 flows over the whole video) through {backbone}"
        + (", then two LSTMs" if lstm else ", features averaged (no LSTM)"),
        lambda spec: FlowLSTM(backbone, lstm), ClipSpec(clip_length=71, size=(112, 112), flow="hsv"),
        Recipe("ce", "adam", 1e-5, 128, 20), "clip", "softmax", IMAGENET, "flowlstm", table_row=row, chosen=chosen,
        pretrained_module="backbone",
    )


# The two-stream family (a Stanford report on a DFDC subset) gives 16 frames spread over the
# video at 108x192, the networks' layer shapes, BCE (+ soft F1 for whole videos), class
# weights, Adam 1e-3, batches of 16 frames or 4 videos.
_TWOSTREAM_CHOSEN = {
    "schedule": TRAIN_EPOCHS,
    "normalisation": IMAGENET_STATS,
    "augment": NOT_DESCRIBED, "weight_decay": "not given; 0", "momentum": "not used by Adam",
    "pretrained": "ImageNet ResNet-50 assumed, from --pretrained; none given trains from scratch",
    "finetune": "not given; all layers train",
}
_FLOW_NET = "temporal stream kernels and widths not given: 5x5/2 then 3x3/2 convolutions reproduce its (64, 25, 46) map"
# The report normalises its frames; how it scales flow is not said.
_FLOW_SCALE = ("; flow in pixels, unscaled: batch norm follows the bias-free first convolution, so any fixed scale "
               "cancels, and per-sample standardisation learned no better on the demo corpus (BENCHMARKS.md)")
_SOFT_F1 = "alpha and beta of alpha*BCE + beta*(1 - soft F1) not given: 1 and 1"
_TWOSTREAM_SIZE = (108, 192)
_TWOSTREAM_FLOW = ClipSpec(clip_length=16, size=_TWOSTREAM_SIZE, flow="raw", flow_per_frame=True)

VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in [
        Variant(
            "ofcnn", "optical flow + CNN: 10 consecutive face crops as 2 groups of 5, each group's 4 flows stacked to 8 channels",
            lambda spec: OpticalFlowCNN(spec.size, spec.groups, spec.clip_length),
            ClipSpec(clip_length=5, groups=2, size=(256, 256), flow="raw"),
            Recipe("mse", "adam", 1e-3, 16, 80), "clip", "sigmoid", UNIT_RANGE, "ofcnn",
            table_row="FaceForensics++ (98.1% accuracy, AUC 0.998)",
            chosen={"optimizer": "not given; Adam, as MesoNet whose layer shapes the branches reuse",
                    "lr": "not given; 1e-3, MesoNet's", "batch_size": "not given; 16",
                    "normalisation": "not given; [0, 1] pixels, MesoNet's rescaling; flow in pixels",
                    "class_weights": NOT_DESCRIBED, "augment": NOT_DESCRIBED, "weight_decay": "not given; 0",
                    "momentum": "not used by Adam", "pretrained": "trained from scratch; none", "finetune": "all layers train"},
        ),
        _flowlstm("flowlstm", "resnet50", True, "Table of backbones, ResNet50 + LSTM (FF++ 91.2%, Celeb-DF 79.5%, DFDC 66.3%)"),
        _flowlstm("flowlstm_vgg16", "vgg16", True, "Table of backbones, VGG16 + LSTM (the paper's 'our work' row)"),
        _flowlstm("flowlstm_efficientnet_b7", "efficientnet_b7", True, "Table of backbones, EfficientNet-B7 + LSTM"),
        _flowlstm("flowcnn", "resnet50", False, "OF + CNN without the LSTM (its best on Celeb-DF and DFDC)"),
        Variant(
            "gml", "Xception with motion-consistency blocks and an anomaly branch at block 5, 8-frame clips",
            lambda spec: MotionConsistencyNet(spec.clip_length, spec.size), ClipSpec(clip_length=8, size=(224, 224)),
            Recipe("gml", "sgd", 1e-3, 16, 20, weight_decay=1e-6, iterations=150_000), "clip", "two_softmax", INCEPTION, "gml",
            table_row="Celeb-DF in-domain (AUC 99.9) and FF++ -> Celeb-DF (AUC 75.3)",
            chosen={"network": "branch width not given: 256 channels inside its 9 residual blocks; the branch classifier "
                               "scores each frame's clue map, averaged over the clip",
                    "momentum": "not given; 0.9, the common SGD default",
                    "normalisation": "not given; Xception's [-1, 1] (Inception) convention",
                    "class_weights": NOT_DESCRIBED, "augment": NOT_DESCRIBED,
                    "pretrained": "ImageNet Xception assumed, from --pretrained; the motion-consistency blocks start from scratch",
                    "finetune": "not given; all layers train"},
            pretrained_module="backbone", pretrained_new=(".conv1.temporal.", ".conv1.spatial.", ".conv1.reduce.", ".conv1.kernel.",
                                                          ".conv1.expand_motion.", ".conv1.expand_consistency."),
        ),
        Variant(
            "frame_cnn", "ResNet-50 per frame; a video is fake when enough of its frames are",
            lambda spec: ImageClassifier(resnet50_trunk(), RESNET50_FEATURES, 1), ClipSpec(clip_length=1, size=_TWOSTREAM_SIZE),
            Recipe("bce", "adam", 1e-3, 16, 20, class_weights=True), "frame", "sigmoid", IMAGENET, "twostream",
            table_row="DFDC subset, frame-level ResNet50", chosen=_TWOSTREAM_CHOSEN, video_rule="share", pretrained_module="trunk",
        ),
        Variant(
            "twostream_frame", "per frame/flow pair: ResNet-50 of the frame and the temporal stream of its flow",
            lambda spec: TwoStreamFrame(spec.size), ClipSpec(clip_length=1, size=_TWOSTREAM_SIZE, flow="raw", flow_per_frame=True),
            Recipe("bce", "adam", 1e-3, 16, 20, class_weights=True), "frame", "sigmoid", IMAGENET, "twostream",
            table_row="DFDC subset, two-stream per frame",
            chosen={**_TWOSTREAM_CHOSEN, "network": _FLOW_NET + "; flattened, linear 128", "normalisation": IMAGENET_STATS + _FLOW_SCALE},
            video_rule="share", pretrained_module="trunk",
        ),
        Variant(
            "twostream_video", "per video: 16 frames through ResNet-50 and 16 flows through the flattened temporal stream",
            lambda spec: TwoStreamVideo(spec.clip_length, spec.size), _TWOSTREAM_FLOW,
            Recipe("bce_softf1", "adam", 1e-3, 4, 20, class_weights=True), "clip", "sigmoid", IMAGENET, "twostream",
            table_row="DFDC subset, two-stream per video (the report's best)",
            chosen={**_TWOSTREAM_CHOSEN, "network": _FLOW_NET, "loss": _SOFT_F1, "normalisation": IMAGENET_STATS + _FLOW_SCALE},
            pretrained_module="trunk",
        ),
        Variant(
            "cnn_rnn", "ResNet-50 features of 16 frames through an LSTM",
            lambda spec: CNNRNN(), ClipSpec(clip_length=16, size=_TWOSTREAM_SIZE),
            Recipe("bce_softf1", "adam", 1e-3, 4, 20, class_weights=True), "clip", "sigmoid", IMAGENET, "twostream",
            table_row="DFDC subset, CNN-RNN",
            chosen={**_TWOSTREAM_CHOSEN, "network": "LSTM width not given: 512 hidden units, one layer", "loss": _SOFT_F1},
            pretrained_module="trunk",
        ),
        Variant(
            "cnn3d_video", "a 3D CNN on 16 whole frames spread over the video, 224 px",
            lambda spec: R3D(18, classes=1), ClipSpec(clip_length=16, size=(224, 224)),
            Recipe("bce_softf1", "adam", 1e-3, 4, 20, class_weights=True), "clip", "sigmoid", KINETICS, "video3d",
            table_row="DFDC subset, 3D CNN on whole frames",
            chosen={**_TWOSTREAM_CHOSEN, "loss": _SOFT_F1,
                    "network": "layers not given: torchvision's R3D-18, one output",
                    "normalisation": "not given; Kinetics mean/std, the convention of R3D-18",
                    "pretrained": "Kinetics R3D-18 assumed, from --pretrained; none given trains from scratch"},
            pretrained_module="net", pretrained_head=("fc.",),
        ),
        _r3d(18),
        _r3d(50),
        _r3d(101),
        _meso("meso4", inception=False),
        _meso("mesoinception4", inception=True),
        Variant(
            "xception", "Xception on 299 px face crops (the FaceForensics++ baseline)",
            _xception, ClipSpec(clip_length=1, size=(299, 299)),
            Recipe("ce", "adam", 2e-4, 32, 15), "frame", "softmax", INCEPTION, "deepfakebench",
            table_row="FaceForensics++, XceptionNet (face crops)",
            chosen={"class_weights": NOT_DESCRIBED, "augment": NOT_DESCRIBED, "weight_decay": "not given; 0",
                    "momentum": "not used by Adam",
                    "finetune": "the paper's 3 warm-up epochs of the head alone are not reproduced; all layers train"},
            pretrained_module="trunk",
        ),
        Variant(
            "resnet50", "2D ResNet-50 from ImageNet, upper layers fine-tuned per frame on 224 px face crops, augmented",
            lambda spec: ImageClassifier(resnet50_trunk(), RESNET50_FEATURES, 2), ClipSpec(clip_length=1, size=(224, 224)),
            Recipe("ce", "adam", 1e-4, 32, 20), "frame", "softmax", IMAGENET, "r3d",
            table_row="DFDC baselines of the 3D ResNet paper, 2D ResNet50 (84%)",
            chosen={**_R3D_CHOSEN, "batch_size": "not given; 32 frames",
                    "finetune": "'upper layers' not named; conv5 (layer4) and the classifier, as for the 3D ResNets"},
            augment=True, pretrained_module="trunk", finetune=("trunk.layer4", "head"),
        ),
    ]
}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"--model {name}: unknown detector; allowed: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def _values(variant: Variant) -> dict[str, str]:
    """Each field of FIELDS as text."""
    spec, recipe = variant.spec, variant.recipe
    size = "stored size" if spec.size is None else f"{spec.size[0]}x{spec.size[1]}"
    flow = "no flow" if spec.flow == "none" else f"{spec.flow} flow" + (" per frame" if spec.flow_per_frame else "")
    groups = f"{spec.groups} groups of " if spec.groups > 1 else ""
    return {
        "input": f"{groups}{spec.clip_length} frames, {size}, {flow} (profile {variant.profile})",
        "network": variant.paper,
        "loss": recipe.loss,
        "optimizer": recipe.optimizer,
        "lr": f"{recipe.lr:g}",
        "batch_size": f"{recipe.batch_size} {'frames' if variant.level == 'frame' else 'samples'}",
        "schedule": f"{recipe.iterations} iterations" if recipe.iterations else f"{recipe.epochs} epochs",
        "weight_decay": f"{recipe.weight_decay:g}",
        "momentum": f"{recipe.momentum:g}" if recipe.optimizer == "sgd" else "-",
        "class_weights": "on" if recipe.class_weights else "off",
        "augment": "crop, brightness, flip" if variant.augment else "off",
        "normalisation": {UNIT_RANGE: "[0, 1]", IMAGENET: "ImageNet", INCEPTION: "[-1, 1]", KINETICS: "Kinetics"}[variant.normalisation],
        "pretrained": f"--pretrained FILE into `{variant.pretrained_module or 'network'}`",
        "finetune": ", ".join(variant.finetune) + " (with --pretrained)" if variant.finetune else "all layers",
    }


def describe(variants: list[Variant] | None = None) -> str:
    """`dfprep models`: per variant, its table row and, per field, the value and whether it is
    the paper's or chosen (with the source)."""
    blocks = []
    for variant in variants or VARIANTS.values():
        values, sources = _values(variant), variant.provenance()
        lines = [f"{variant.name}: {variant.table_row}"]
        lines += [f"  {field:<14} {values[field]:<44} {sources[field]}" for field in FIELDS]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
