"""Evaluation figures: ROC curves and training curves, as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen before pyplot loads
import numpy as np  # noqa: E402


def roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str, path: Path) -> Path:
    """One ROC curve per label: false positive rates, true positive rates, AUC."""
    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    for label, (fpr, tpr, auc) in curves.items():
        axis.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})", drawstyle="steps-post")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), title=title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def training_curves_png(history: list[dict], title: str, path: Path) -> Path:
    """Train and validation loss, and validation AUC, by epoch."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, auc_axis) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    loss_axis.plot(epochs, [row["train_loss"] for row in history], marker=".", label="train")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], marker=".", label="val")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axis.legend()
    auc_axis.plot(epochs, [row["val_auc"] for row in history], marker=".", color="tab:green")
    auc_axis.set(xlabel="epoch", ylabel="AUC", ylim=(0, 1.02), title="validation AUC, per frame or clip")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
