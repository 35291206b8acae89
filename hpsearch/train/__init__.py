"""The trainer: one family per task kind (tabular, audio, image), sharing the losses, the
optimizers and schedules (timm and torch), and the epoch loop that reports a validation metric
after every epoch.

Workers call :func:`train`, which picks the family's ``fit`` (:func:`fitter`); :func:`fit`
(tabular), :func:`fit_audio` and :func:`fit_image` yield a run epoch by epoch for callers that
want more than the reported metric (the learning rate, the training loss).
"""

from __future__ import annotations

from hpsearch.train.audio import fit as fit_audio
from hpsearch.train.config import DEFAULTS, TrainConfig, parse_config
from hpsearch.train.data import TabularData, TabularSplit, load_tabular
from hpsearch.train.image import fit as fit_image
from hpsearch.train.loop import EpochResult
from hpsearch.train.losses import ProbabilityMSELoss, SoftF1Loss, build_loss
from hpsearch.train.models import (
    DropConnectLinear,
    GeneralRelu,
    HiddenBlock,
    TabularMLP,
    build_model,
)
from hpsearch.train.optim import LrSchedule, build_optimizer, build_schedule, timm_optimizer_name
from hpsearch.train.run import FITTERS, fitter, train
from hpsearch.train.tabular import fit

__all__ = [
    "DEFAULTS",
    "FITTERS",
    "DropConnectLinear",
    "EpochResult",
    "GeneralRelu",
    "HiddenBlock",
    "LrSchedule",
    "ProbabilityMSELoss",
    "SoftF1Loss",
    "TabularData",
    "TabularMLP",
    "TabularSplit",
    "TrainConfig",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "fit",
    "fit_audio",
    "fit_image",
    "fitter",
    "load_tabular",
    "parse_config",
    "timm_optimizer_name",
    "train",
]
