"""Checkpoints: a plain dict of the run (variant, input spec, recipe, store profile, weights,
optimiser, history, RNG), saved atomically; and the detector rebuilt from one."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from stages.errors import ConfigError
from trainer.dataset import ClipSpec
from trainer.detector import Detector
from trainer.registry import get_variant

FORMAT = "dfprep-checkpoint-1"


def save(path: Path, state: dict) -> None:
    """Write next to the target, then rename: a killed run never leaves half a checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save({"format": FORMAT, **state}, partial)
    os.replace(partial, path)


def load(path: str | Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"--checkpoint {path}: no such file") from None
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ConfigError(f"--checkpoint {path}: not a checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"--checkpoint {path}: not a dfprep checkpoint (a plain weight file goes to train --pretrained)")
    return state


def detector_from(state: dict) -> Detector:
    """The checkpoint's detector with its weights, in eval mode, on the CPU."""
    detector = Detector(get_variant(state["model"]), ClipSpec.from_dict(state["spec"]))
    detector.load_state_dict(state["weights"])
    return detector.eval()
