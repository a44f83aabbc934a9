"""Training losses over units (frames or clips), with per-class weights, and the output head
each one expects."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Weights of the whole-video two-stream loss alpha*BCE + beta*(1 - soft F1); the paper
# leaves them open, so both terms count alike.
SOFT_F1_ALPHA, SOFT_F1_BETA = 1.0, 1.0


def _weighted_mean(per_unit: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each unit's loss times its class's weight. Divided by the number
    of units, not the sum of weights, so that a batch of one class keeps its class's weight
    (dividing by the weights' sum cancels them there, as PyTorch's `weight=` does)."""
    return (per_unit * class_weights[labels]).mean()


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


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    return _weighted_mean(F.cross_entropy(logits.float(), labels, reduction="none"), labels, class_weights)


def cross_entropy(output: dict, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    return _cross_entropy(output["logits"], labels, class_weights)


def clue_l1(clue: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The anomaly branch's L1 term: the L1 norm of each real clip's clue maps (B*T, C, h, w),
    summed over its frames, averaged over the batch's real clips; zero without a real clip."""
    per_clip = clue.float().abs().view(len(labels), -1).sum(dim=1)
    real = labels == 0
    return per_clip[real].mean() if real.any() else per_clip.sum() * 0


def motion_consistency(output: dict, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """CE of the backbone + L1 of the clue map on real clips + CE of the anomaly branch."""
    branch = _cross_entropy(output["branch_logits"], labels, class_weights)
    return cross_entropy(output, labels, class_weights) + clue_l1(output["clue"], labels) + branch


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
