"""Training losses over the model's logits, each fed the output form it expects.

CE takes logits; MSE and soft-F1 take softmax probabilities (a bounded output matched to a
bounded target). A regression loss takes the model's one raw output (an unbounded output for
an unbounded, standardized target). Targets are class indices, or class probabilities (soft targets,
as Mixup and
CutMix make them). The validation loss is always plain CE on logits, whatever trains the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from hpsearch.train.core.config import LossConfig, RegressionLossConfig

__all__ = [
    "ProbabilityMSELoss",
    "RegressionLoss",
    "SoftF1Loss",
    "build_loss",
    "build_regression_loss",
]


def _probabilities(target: torch.Tensor, n_classes: int, dtype: torch.dtype) -> torch.Tensor:
    # Class indices become one-hot rows; soft targets already are probability rows.
    if target.is_floating_point():
        return target.to(dtype)
    return F.one_hot(target, n_classes).to(dtype)


class ProbabilityMSELoss(nn.Module):
    """Mean squared error between softmax probabilities and the target's (one-hot for class
    indices)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=1)
        return F.mse_loss(probs, _probabilities(target, self.n_classes, probs.dtype))


class SoftF1Loss(nn.Module):
    """``1 - macro F1`` computed with probabilities instead of hard predictions.

    Counting true/false positives with probabilities makes F1 differentiable, so the model
    optimizes the metric directly (see "Best loss function for F1-score metric" on Kaggle).
    """

    def __init__(self, n_classes: int, eps: float = 1e-7) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=1)
        onehot = _probabilities(target, self.n_classes, probs.dtype)
        tp = (probs * onehot).sum(dim=0)
        fp = (probs * (1 - onehot)).sum(dim=0)
        fn = ((1 - probs) * onehot).sum(dim=0)
        f1 = 2 * tp / (2 * tp + fp + fn + self.eps)
        return 1 - f1.mean()


def build_loss(cfg: LossConfig, n_classes: int, *, soft_targets: bool = False) -> nn.Module:
    """The loss ``loss.name`` names: ``ce`` (with ``loss.label_smoothing``), ``mse`` or ``soft_f1``.

    With ``soft_targets`` (Mixup's class probabilities, label smoothing already in them) ``ce``
    is timm's ``SoftTargetCrossEntropy``. ``loss.activation_reg`` is not part of the loss: the
    tabular trainer adds it, since it needs the hidden activations rather than the logits.
    """
    if cfg.name == "ce":
        if soft_targets:
            return SoftTargetCrossEntropy()
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.name == "mse":
        return ProbabilityMSELoss(n_classes)
    if cfg.name == "soft_f1":
        return SoftF1Loss(n_classes)
    raise ValueError(f"`loss.name` must be ce, mse or soft_f1, got {cfg.name!r}")


class RegressionLoss(nn.Module):
    """A regression loss (``mse``, ``huber`` with delta 1, or ``l1``) between the model's single
    output column and the standardized target."""

    def __init__(self, name: str) -> None:
        super().__init__()
        losses = {"mse": nn.MSELoss(), "huber": nn.HuberLoss(delta=1.0), "l1": nn.L1Loss()}
        if name not in losses:
            raise ValueError(f"`loss.name` must be one of {list(losses)}, got {name!r}")
        self.name = name
        self.loss = losses[name]

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(output.squeeze(1), target.to(output.dtype))


def build_regression_loss(cfg: RegressionLossConfig) -> nn.Module:
    """The regression loss ``loss.name`` names: ``mse``, ``huber`` or ``l1``."""
    return RegressionLoss(cfg.name)
