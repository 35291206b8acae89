"""The trainer: tabular data, an MLP, losses, optimizers and schedules (timm and torch), and the
epoch loop that reports a validation metric after every epoch.

Workers call :func:`train`; :func:`fit` yields the same run epoch by epoch for callers that
want more than the reported metric (the learning rate, the training loss).
"""

from __future__ import annotations

from hpsearch.train.config import DEFAULTS, TrainConfig, parse_config
from hpsearch.train.data import TabularData, TabularSplit, load_tabular
from hpsearch.train.loop import EpochResult, fit, train
from hpsearch.train.losses import ProbabilityMSELoss, SoftF1Loss, build_loss
from hpsearch.train.models import (
    DropConnectLinear,
    GeneralRelu,
    HiddenBlock,
    TabularMLP,
    build_model,
)
from hpsearch.train.optim import LrSchedule, build_optimizer, build_schedule, timm_optimizer_name

__all__ = [
    "train",
    "fit",
    "EpochResult",
    "DEFAULTS",
    "TrainConfig",
    "parse_config",
    "load_tabular",
    "TabularData",
    "TabularSplit",
    "build_model",
    "TabularMLP",
    "HiddenBlock",
    "DropConnectLinear",
    "GeneralRelu",
    "build_loss",
    "ProbabilityMSELoss",
    "SoftF1Loss",
    "build_optimizer",
    "build_schedule",
    "LrSchedule",
    "timm_optimizer_name",
]
