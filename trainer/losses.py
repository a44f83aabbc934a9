"""Training losses over units (frames or clips), with per-class weights, and the output head
each one expects."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Weights of the whole-video two-stream loss alpha*BCE + beta*(1 - soft F1); the paper
# leaves them open, so both terms count alike.
SOFT_F1_ALPHA, SOFT_F1_BETA = 1.0, 1.0


def _weighted_mean(per_unit: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    weights = class_weights[labels]
    return (per_unit * weights).sum() / weights.sum()


def mse(output: dict, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Squared error of the sigmoid output against 0 real / 1 fake."""
    per_unit = (torch.sigmoid(output["logits"].float()) - labels.float()) ** 2
    return _weighted_mean(per_unit, labels, class_weights)


def bce(output: dict, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    per_unit = F.binary_cross_entropy_with_logits(output["logits"].float(), labels.float(), reduction="none")
    return _weighted_mean(per_unit, labels, class_weights)


def soft_f1(probability: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """F1 with probabilities in place of hard decisions, so that it has a gradient."""
    truth = labels.float()
    true_positive = (probability * truth).sum()
    false_positive = (probability * (1 - truth)).sum()
    false_negative = ((1 - probability) * truth).sum()
    return 2 * true_positive / (2 * true_positive + false_positive + false_negative + 1e-8)


def bce_soft_f1(output: dict, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    probability = torch.sigmoid(output["logits"].float())
    return SOFT_F1_ALPHA * bce(output, labels, class_weights) + SOFT_F1_BETA * (1 - soft_f1(probability, labels))


def cross_entropy(output: dict, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output["logits"].float(), labels, weight=class_weights)


def motion_consistency(output: dict, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """CE of the backbone + CE of the anomaly branch + L1 of the branch's clue map on real clips."""
    real = labels == 0
    clue_l1 = output["clue"][real].float().abs().mean() if real.any() else output["clue"].sum() * 0
    branch = F.cross_entropy(output["branch_logits"].float(), labels, weight=class_weights)
    return cross_entropy(output, labels, class_weights) + clue_l1 + branch


# name -> (loss, the head whose outputs it reads)
LOSSES = {
    "mse": (mse, "sigmoid"),
    "bce": (bce, "sigmoid"),
    "bce_softf1": (bce_soft_f1, "sigmoid"),
    "ce": (cross_entropy, "softmax"),
    "gml": (motion_consistency, "two_softmax"),
}


def fake_probability(output: dict, head: str) -> torch.Tensor:
    """Probability of fake per unit: sigmoid of one logit, softmax of two, or the mean of two
    softmax classifiers (the motion-consistency net averages its backbone and branch)."""
    if head == "sigmoid":
        return torch.sigmoid(output["logits"].float())
    probability = output["logits"].float().softmax(-1)[..., 1]
    if head == "two_softmax":
        probability = (probability + output["branch_logits"].float().softmax(-1)[..., 1]) / 2
    return probability
