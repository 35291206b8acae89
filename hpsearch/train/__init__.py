"""The trainer: one family per task kind (tabular, audio, image), sharing the losses, the
optimizers and schedules (timm and torch), and the epoch loop that reports a validation metric
after every epoch.

Workers call :func:`train`, which picks the family's ``fit`` (:func:`fitter`); :func:`fit`
(tabular), :func:`fit_audio` and :func:`fit_image` yield a run epoch by epoch for callers that
want more than the reported metric (the learning rate, the training loss).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from hpsearch.train.optim import (
        LrSchedule,
        build_optimizer,
        build_schedule,
        timm_optimizer_name,
    )
    from hpsearch.train.predictions import WORST_KEPT, ValPredictions
    from hpsearch.train.run import FITTERS, fitter, train
    from hpsearch.train.tabular import fit

# Imported when first used: ``hpsearch.train.predictions`` (numpy only) must stay importable
# without torch, for the service and the error-analysis report.
_WHERE = {
    "fit_audio": ("hpsearch.train.audio", "fit"),
    "DEFAULTS": ("hpsearch.train.config", "DEFAULTS"),
    "TrainConfig": ("hpsearch.train.config", "TrainConfig"),
    "parse_config": ("hpsearch.train.config", "parse_config"),
    "TabularData": ("hpsearch.train.data", "TabularData"),
    "TabularSplit": ("hpsearch.train.data", "TabularSplit"),
    "load_tabular": ("hpsearch.train.data", "load_tabular"),
    "fit_image": ("hpsearch.train.image", "fit"),
    "EpochResult": ("hpsearch.train.loop", "EpochResult"),
    "ProbabilityMSELoss": ("hpsearch.train.losses", "ProbabilityMSELoss"),
    "SoftF1Loss": ("hpsearch.train.losses", "SoftF1Loss"),
    "build_loss": ("hpsearch.train.losses", "build_loss"),
    "DropConnectLinear": ("hpsearch.train.models", "DropConnectLinear"),
    "GeneralRelu": ("hpsearch.train.models", "GeneralRelu"),
    "HiddenBlock": ("hpsearch.train.models", "HiddenBlock"),
    "TabularMLP": ("hpsearch.train.models", "TabularMLP"),
    "build_model": ("hpsearch.train.models", "build_model"),
    "LrSchedule": ("hpsearch.train.optim", "LrSchedule"),
    "build_optimizer": ("hpsearch.train.optim", "build_optimizer"),
    "build_schedule": ("hpsearch.train.optim", "build_schedule"),
    "timm_optimizer_name": ("hpsearch.train.optim", "timm_optimizer_name"),
    "WORST_KEPT": ("hpsearch.train.predictions", "WORST_KEPT"),
    "ValPredictions": ("hpsearch.train.predictions", "ValPredictions"),
    "FITTERS": ("hpsearch.train.run", "FITTERS"),
    "fitter": ("hpsearch.train.run", "fitter"),
    "train": ("hpsearch.train.run", "train"),
    "fit": ("hpsearch.train.tabular", "fit"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "DEFAULTS",
    "FITTERS",
    "WORST_KEPT",
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
    "ValPredictions",
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
