"""The detector registry: every published variant with its network, the input it declares,
its output head and its paper's training recipe. A variant that differs only by backbone or
depth is an entry here, not a new module."""

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
    """How a variant trains: its paper's loss and optimiser unless overridden."""

    loss: str
    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    class_weights: bool = True

    def __post_init__(self):
        check(self.loss in LOSSES, "loss", self.loss, f"allowed: {', '.join(LOSSES)}")
        check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"allowed: {', '.join(OPTIMIZERS)}")
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")


@dataclass(frozen=True)
class Variant:
    """One registered detector. `build` makes its network for an input spec; `level` says
    whether it scores each frame or each sample; `video_rule` turns unit scores into a video
    score (`mean` probability, or `share` of units called fake); `pretrained_module` is the
    submodule a published weight file fits; `finetune` the parameter prefixes trained when
    such weights are given (empty: all)."""

    name: str
    paper: str
    build: Callable[[ClipSpec], nn.Module]
    spec: ClipSpec
    recipe: Recipe
    level: str
    head: str
    normalisation: tuple[tuple[float, float, float], tuple[float, float, float]]
    profile: str
    video_rule: str = "mean"
    augment: bool = False
    pretrained_module: str = ""
    finetune: tuple[str, ...] = ()

    def __post_init__(self):
        assert self.level in LEVELS and self.video_rule in VIDEO_RULES
        assert LOSSES[self.recipe.loss][1] == self.head, f"{self.name}: loss {self.recipe.loss} does not read a {self.head} head"
        assert self.level == "clip" or self.spec.groups == 1


def _xception(spec: ClipSpec) -> nn.Module:
    trunk = timm.create_model("legacy_xception", pretrained=False, num_classes=0)
    return ImageClassifier(trunk, trunk.num_features, 2)


def _r3d(depth: int) -> Variant:
    return Variant(
        f"r3d{depth}", f"3D ResNet-{depth}, 3x3x3 kernels, on 16 consecutive face frames (DFDC)",
        lambda spec: R3D(depth), ClipSpec(clip_length=16, size=(224, 224)),
        Recipe("ce", "adam", 1e-4, 8, 20), "clip", "softmax", KINETICS, "r3d",
        augment=True, pretrained_module="net", finetune=("net.layer4", "net.fc"),
    )


def _meso(name: str, inception: bool) -> Variant:
    return Variant(
        name, f"{'MesoInception-4' if inception else 'Meso-4'} (MesoNet) on 256 px face crops",
        lambda spec: MesoNet(spec.size, inception=inception), ClipSpec(clip_length=1, size=(256, 256)),
        Recipe("mse", "adam", 1e-3, 75, 20), "frame", "sigmoid", UNIT_RANGE, "deepfakebench",
    )


# The two-stream family reads the whole frames its profile stores (108x192) at their size.
_TWOSTREAM_FLOW = ClipSpec(clip_length=16, flow="raw", flow_per_frame=True)

VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in [
        Variant(
            "ofcnn", "optical flow + CNN: 2 groups of 5 face crops and their 4 flows stacked to 8 channels",
            lambda spec: OpticalFlowCNN(spec.size, spec.groups, spec.clip_length),
            ClipSpec(clip_length=5, groups=2, size=(256, 256), flow="raw"),
            Recipe("mse", "adam", 1e-3, 16, 80), "clip", "sigmoid", UNIT_RANGE, "ofcnn",
        ),
        Variant(
            "flowlstm", "HSV-coded flow of 112 px crops through ResNet-50, then two LSTMs",
            lambda spec: FlowLSTM(), ClipSpec(clip_length=21, size=(112, 112), flow="hsv"),
            Recipe("ce", "adam", 1e-5, 8, 20), "clip", "softmax", IMAGENET, "flowlstm", pretrained_module="backbone",
        ),
        Variant(
            "gml", "Xception with motion-consistency blocks and an anomaly branch, 8-frame clips",
            lambda spec: MotionConsistencyNet(spec.clip_length), ClipSpec(clip_length=8, size=(224, 224)),
            Recipe("gml", "sgd", 1e-3, 16, 20, weight_decay=1e-6), "clip", "two_softmax", INCEPTION, "gml",
            pretrained_module="backbone",
        ),
        Variant(
            "frame_cnn", "ResNet-50 per frame; a video is fake when enough of its frames are",
            lambda spec: ImageClassifier(resnet50_trunk(), RESNET50_FEATURES, 1), ClipSpec(clip_length=1),
            Recipe("bce", "adam", 1e-3, 16, 20), "frame", "sigmoid", IMAGENET, "twostream",
            video_rule="share", pretrained_module="trunk",
        ),
        Variant(
            "twostream_frame", "per frame: ResNet-50 of the frame and a small conv net of its flow",
            lambda spec: TwoStreamFrame(), _TWOSTREAM_FLOW,
            Recipe("bce", "adam", 1e-3, 1, 20), "frame", "sigmoid", IMAGENET, "twostream",
            video_rule="share", pretrained_module="trunk",
        ),
        Variant(
            "twostream_video", "per video: 16 frames through ResNet-50 and 16 flows through a conv net",
            lambda spec: TwoStreamVideo(spec.clip_length), _TWOSTREAM_FLOW,
            Recipe("bce_softf1", "adam", 1e-3, 4, 20), "clip", "sigmoid", IMAGENET, "twostream", pretrained_module="trunk",
        ),
        Variant(
            "cnn_rnn", "ResNet-50 features of 16 frames through an LSTM",
            lambda spec: CNNRNN(), ClipSpec(clip_length=16),
            Recipe("bce_softf1", "adam", 1e-3, 4, 20), "clip", "sigmoid", IMAGENET, "twostream", pretrained_module="trunk",
        ),
        _r3d(18),
        _r3d(50),
        _r3d(101),
        _meso("meso4", inception=False),
        _meso("mesoinception4", inception=True),
        Variant(
            "xception", "Xception on 299 px face crops (the FaceForensics++ baseline)",
            _xception, ClipSpec(clip_length=1, size=(299, 299)),
            Recipe("ce", "adam", 2e-4, 32, 15), "frame", "softmax", INCEPTION, "deepfakebench", pretrained_module="trunk",
        ),
        Variant(
            "resnet50", "2D ResNet-50 fine-tuned per frame on 224 px face crops",
            lambda spec: ImageClassifier(resnet50_trunk(), RESNET50_FEATURES, 2), ClipSpec(clip_length=1, size=(224, 224)),
            Recipe("ce", "adam", 1e-4, 32, 20), "frame", "softmax", IMAGENET, "r3d", pretrained_module="trunk",
        ),
    ]
}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"--model {name}: unknown detector; allowed: {', '.join(VARIANTS)}")
    return VARIANTS[name]
