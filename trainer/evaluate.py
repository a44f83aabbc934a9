"""Scoring a split with a detector, and `evaluate`: metrics at unit and video level at the
thresholds chosen on the training data's val (kept in the checkpoint) or on the scored store's
val, written as metrics.json, roc.png and curves.png."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stages.errors import ConfigError
from trainer import checkpoint
from trainer.dataset import StoreClipDataset, batch_loader, open_split
from trainer.detector import Detector
from trainer.metrics import SHARE_GRID, Scores, binary_metrics, choose_threshold, per_video, roc_points
from viz.curves import roc_png, training_curves_png


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available; allowed here: auto, cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name}: allowed: auto, cpu, cuda")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision: float16 on CUDA, bfloat16 on the CPU."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def loader(dataset: StoreClipDataset, batch_size: int, workers: int, generator: torch.Generator | None = None) -> torch.utils.data.DataLoader:
    """Shuffled when given a generator (training), in order otherwise. A last batch of one
    sample is dropped in training: batch norm cannot normalise a single value."""
    shuffle = generator is not None
    order = torch.utils.data.RandomSampler(dataset, generator=generator) if shuffle else range(len(dataset))
    return batch_loader(dataset, order, batch_size, workers, generator=generator,
                        drop_last=shuffle and len(dataset) % batch_size == 1 and len(dataset) > 1)


def to_inputs(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    flow = batch.get("flow")
    return batch["frames"].to(device, non_blocking=True), None if flow is None else flow.to(device, non_blocking=True)


def score(detector: Detector, dataset: StoreClipDataset, batch_size: int, device: torch.device, workers: int = 0,
          loss: Callable | None = None, class_weights: torch.Tensor | None = None, amp: bool = False) -> tuple[Scores, float | None]:
    """Fake probability of every unit of the dataset, and the mean loss when one is given."""
    detector.eval()
    probabilities, labels, video_ids, total, seen = [], [], [], 0.0, 0
    with torch.no_grad(), autocast(device, amp):
        for batch in loader(dataset, batch_size, workers):
            output = detector(*to_inputs(batch, device))
            units = detector.units_per_sample(batch["frames"])
            unit_labels = batch["label"].repeat_interleave(units)
            if loss is not None:
                total += float(loss(output, unit_labels.to(device), class_weights)) * len(batch["label"])
                seen += len(batch["label"])
            probabilities.append(detector.probability(output).float().cpu())
            labels.append(unit_labels)
            video_ids.extend(np.repeat(batch["video_id"], units))
    scores = Scores(torch.cat(probabilities).numpy().astype(np.float64), torch.cat(labels).numpy(), np.asarray(video_ids))
    return scores, (total / seen if seen else None)


def choose_thresholds(val: Scores, rule: str) -> dict[str, float]:
    """Unit threshold on validation units; video threshold on validation videos (from the
    share grid for the share rule)."""
    unit = choose_threshold(val.p, val.labels)
    videos = per_video(val, rule, unit)
    return {"unit": unit, "video": choose_threshold(videos.p, videos.labels, SHARE_GRID if rule == "share" else None)}


@dataclass(frozen=True)
class EvaluateRequest:
    checkpoint: str
    store: str
    split: str = "test"
    out: str | None = None  # default: a folder named after the split beside the checkpoint
    device: str = "auto"
    workers: int = 0
    thresholds_from: str = "checkpoint"  # or "val": chosen again on the scored store's val split


THRESHOLD_SOURCES = ("checkpoint", "val")


def evaluate(request: EvaluateRequest) -> dict:
    """Score the split at the chosen thresholds, write metrics.json, roc.png and curves.png."""
    if request.thresholds_from not in THRESHOLD_SOURCES:
        raise ConfigError(f"--thresholds-from {request.thresholds_from}: allowed: {', '.join(THRESHOLD_SOURCES)}")
    out = Path(request.out) if request.out else Path(request.checkpoint).parent / request.split
    state = checkpoint.load(request.checkpoint)
    if request.thresholds_from == "checkpoint" and not state.get("thresholds"):
        raise ConfigError(f"--checkpoint {request.checkpoint}: holds no thresholds (a last.pt, or an unfinished run); "
                          "use best.pt of a finished run or --thresholds-from val")
    return evaluate_state(state, request.checkpoint, request.store, request.split, out, pick_device(request.device),
                          request.workers, request.thresholds_from)


def evaluate_state(state: dict, name: str, store: str, split: str, out: Path, device: torch.device, workers: int = 0,
                   thresholds_from: str = "val") -> dict:
    """`evaluate` of a loaded checkpoint; `name` says where it came from. Thresholds are the
    checkpoint's (chosen on its training store's val) or chosen on `store`'s val."""
    detector = checkpoint.detector_from(state).to(device)
    variant, spec = detector.variant, detector.spec
    batch_size = state["recipe"]["batch_size"]
    val = None
    if thresholds_from == "val":
        val, _ = score(detector, open_split(store, spec, "val"), batch_size, device, workers)
        thresholds, source = choose_thresholds(val, variant.video_rule), f"val split of {store}"
    else:
        thresholds, source = state["thresholds"], f"checkpoint {name} (chosen on the val split of {state['store']})"
    scores = val if split == "val" and val is not None else score(detector, open_split(store, spec, split), batch_size, device, workers)[0]
    videos = per_video(scores, variant.video_rule, thresholds["unit"])
    metrics = {
        "model": state["model"],
        "checkpoint": str(name),
        "epoch": state["epoch"],
        "store": store,
        "split": split,
        "thresholds_from": source,
        "video_rule": variant.video_rule,
        variant.level: binary_metrics(scores.p, scores.labels, thresholds["unit"]),
        "video": binary_metrics(videos.p, videos.labels, thresholds["video"]),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    curves = {level: (*points, metrics[level]["auc"])
              for level, points in ((variant.level, roc_points(scores)), ("video", roc_points(videos))) if points is not None}
    roc_png(curves, f"{state['model']} on {split}", out / "roc.png")
    training_curves_png(state["history"], f"{state['model']} training", out / "curves.png")
    return metrics
