"""Profiles: named sets of stage parameters, one per paper, and the stage keys they imply."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from feature_store.schema import StageKeys
from stages import decode, faces, flow
from stages.config import stage_key
from stages.decode import DecodeConfig, SamplingConfig
from stages.errors import ConfigError
from stages.faces import CropConfig, FacesConfig
from stages.flow import FlowConfig


@dataclass(frozen=True)
class Profile:
    """Stage parameters for one run. `crops[0]` is stored as `frames` and is what flow sees;
    further crops are stored as `frames_<mode>`."""

    name: str
    sampling: SamplingConfig
    crops: tuple[CropConfig, ...]
    flow: FlowConfig | None
    decode: DecodeConfig = DecodeConfig()
    faces: FacesConfig = FacesConfig()

    def __post_init__(self):
        if any(crop.mode == "align" for crop in self.crops) and not self.faces.landmarks:
            raise ConfigError("faces.landmarks=False: align crops are made from landmarks; set faces.landmarks=true")

    @property
    def needs_face(self) -> bool:
        return any(crop.needs_face for crop in self.crops)

    def stage_keys(self, content_sha256: str) -> StageKeys:
        """Chained keys: a change to a stage's parameters changes its key and every later one."""
        decode_key = stage_key(
            "decode", decode.VERSION, {"sampling": self.sampling.to_dict(), "max_side": self.decode.max_side}, content_sha256
        )
        faces_config = {"faces": self.faces.to_dict(), "crops": [crop.to_dict() for crop in self.crops]}
        faces_key = stage_key("faces", faces.VERSION, faces_config, decode_key)
        flow_config = self.flow.hashed() if self.flow else None
        return StageKeys(decode_key, faces_key, stage_key("flow", flow.VERSION, flow_config, faces_key))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "sampling": self.sampling.to_dict(),
            "decode": self.decode.to_dict(),
            "faces": self.faces.to_dict(),
            "crops": [crop.to_dict() for crop in self.crops],
            "flow": self.flow.to_dict() if self.flow else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        """The profile `to_dict` wrote (a stored video's `config`)."""
        return cls(
            name=data["name"],
            sampling=SamplingConfig.from_dict(data["sampling"]),
            crops=tuple(CropConfig.from_dict(crop) for crop in data["crops"]),
            flow=FlowConfig.from_dict(data["flow"]) if data["flow"] else None,
            decode=DecodeConfig.from_dict(data["decode"]),
            faces=FacesConfig.from_dict(data["faces"]),
        )

    def with_overrides(self, assignments: list[str]) -> Profile:
        """Apply `stage.field=value` assignments; `crop.*` sets the first crop, and `flow.*`
        on a profile without flow turns flow on."""
        by_stage: dict[str, dict[str, str]] = {}
        for assignment in assignments:
            name, sep, value = assignment.partition("=")
            stage, dot, field = name.partition(".")
            if not sep or not dot or stage not in OVERRIDABLE:
                raise ConfigError(f"--set {assignment}: expected STAGE.FIELD=VALUE with STAGE one of {', '.join(OVERRIDABLE)}")
            by_stage.setdefault(stage, {})[field] = value
        profile = self
        for stage, fields in by_stage.items():
            if stage == "crop":
                first = self.crops[0].with_text_overrides("crop", fields)
                profile = dataclasses.replace(profile, crops=(first,) + self.crops[1:])
            else:
                current = getattr(self, stage) or FlowConfig()
                profile = dataclasses.replace(profile, **{stage: current.with_text_overrides(stage, fields)})
        return profile


OVERRIDABLE = ("sampling", "decode", "faces", "crop", "flow")


def _box(size: int) -> CropConfig:
    return CropConfig(mode="box", size=(size, size))


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in [
        Profile("default", SamplingConfig(clips=8, clip_length=16, step=1), (_box(256),), FlowConfig()),
        # Optical-flow CNN: runs of 10 consecutive frames, read as two adjacent groups of 5 with
        # 4 flows each (stacked to 8 channels); the flow between the groups goes unused.
        Profile("ofcnn", SamplingConfig(clips=8, clip_length=10, step=1), (_box(256),), FlowConfig()),
        # Flow CNN-LSTM: one sequence of 71 frames spread evenly over the video, so 70 flows
        # (the paper's best length on FF++; 90 on Celeb-DF, 30 on DFDC: sampling.clip_length).
        Profile("flowlstm", SamplingConfig(clips=1, clip_length=71, step=0), (_box(112),), FlowConfig()),
        # Motion-consistency network: 8-frame sequences of every 2nd frame, fixed square per sequence.
        Profile("gml", SamplingConfig(clips=4, clip_length=8, step=2), (CropConfig("fixed", (224, 224)),), None),
        # Spatial/temporal family: 16 frames spread over the video, whole frames and face boxes.
        Profile(
            "twostream",
            SamplingConfig(clips=1, clip_length=16, step=0),
            (CropConfig("frame", (108, 192)), _box(224)),
            FlowConfig(),
        ),
        # The Stanford report's 3D CNN: 16 whole frames spread over the video, at 224 px.
        Profile("video3d", SamplingConfig(clips=1, clip_length=16, step=0), (CropConfig("frame", (224, 224)),), None),
        Profile("r3d", SamplingConfig(clips=4, clip_length=16, step=1), (_box(224),), None),
        # DeepfakeBench's preprocessing output: 32 spread frames, aligned 256 px crops, no flow.
        Profile("deepfakebench", SamplingConfig(clips=1, clip_length=32, step=0), (CropConfig("align", (256, 256)),), None),
    ]
}


def get_profile(name: str, overrides: list[str] = ()) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"--profile {name}: unknown profile; allowed: {', '.join(PROFILES)}")
    return PROFILES[name].with_overrides(list(overrides))
