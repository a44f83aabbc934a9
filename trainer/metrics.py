"""Binary detection metrics at unit (frame or clip) and video level, with thresholds chosen
on the validation split."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

# Share-of-fake-frames thresholds the frame-level two-stream paper searches on validation.
SHARE_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class Scores:
    """Fake probabilities `p` float64 (N,) of N units with their `labels` int64 (N,) and
    `video_ids` (N,)."""

    p: np.ndarray
    labels: np.ndarray
    video_ids: np.ndarray


def per_video(scores: Scores, rule: str, unit_threshold: float) -> Scores:
    """One score a video: the `mean` unit probability, or the `share` of units called fake."""
    ids, inverse = np.unique(scores.video_ids, return_inverse=True)
    values = scores.p if rule == "mean" else (scores.p >= unit_threshold).astype(np.float64)
    counts = np.bincount(inverse, minlength=len(ids))
    video_p = np.bincount(inverse, weights=values, minlength=len(ids)) / counts
    labels = np.zeros(len(ids), np.int64)
    labels[inverse] = scores.labels
    return Scores(video_p, labels, ids)


def choose_threshold(p: np.ndarray, labels: np.ndarray, candidates: tuple[float, ...] | None = None) -> float:
    """The threshold with the best balanced accuracy (fake when p >= threshold), from
    `candidates` or else midway between neighbouring scores; ties go to the one nearest 0.5."""
    if candidates is None:
        values = np.unique(p)
        candidates = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2, [values[-1] + 1e-6]])
    best = max(candidates, key=lambda t: (_balanced_accuracy(p >= t, labels), -abs(t - 0.5)))
    return float(best)


def _balanced_accuracy(called_fake: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([np.mean(called_fake[labels == c] == c) for c in np.unique(labels)]))


def binary_metrics(p: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """accuracy, auc (None when one class is absent), f1, precision, recall of fake, counts."""
    called = (p >= threshold).astype(np.int64)
    both = len(np.unique(labels)) == 2
    return {
        "n": int(len(labels)),
        "n_real": int(np.sum(labels == 0)),
        "n_fake": int(np.sum(labels == 1)),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(labels, called)),
        "auc": float(skm.roc_auc_score(labels, p)) if both else None,
        "f1": float(skm.f1_score(labels, called, zero_division=0)),
        "precision": float(skm.precision_score(labels, called, zero_division=0)),
        "recall": float(skm.recall_score(labels, called, zero_division=0)),
    }


def auc_or_nan(scores: Scores) -> float:
    return float(skm.roc_auc_score(scores.labels, scores.p)) if len(np.unique(scores.labels)) == 2 else math.nan


def roc_points(scores: Scores) -> tuple[np.ndarray, np.ndarray] | None:
    """False and true positive rates of the ROC curve; None when one class is absent."""
    if len(np.unique(scores.labels)) < 2:
        return None
    fpr, tpr, _ = skm.roc_curve(scores.labels, scores.p)
    return fpr, tpr
