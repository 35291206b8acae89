"""The trainer: one family per task kind (tabular, audio, image), sharing the losses, the
optimizers and schedules (timm and torch), and the epoch loop that reports a validation metric
after every epoch.

Workers call :func:`train`, which picks the family's ``fit`` (:func:`fitter`); :func:`fit`
(tabular), :func:`fit_audio` and :func:`fit_image` yield a run epoch by epoch for callers that
want more than the reported metric (the learning rate, the training loss). A trial's model
comes back with :func:`rebuild_model` (its architecture, from the config) and
:func:`validate` (its validation metrics, as the epoch loop computes them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpsearch.train.audio.trainer import fit as fit_audio
    from hpsearch.train.core.config import DEFAULTS, TrainConfig, parse_config
    from hpsearch.train.tabular.data import TabularData, TabularSplit, load_tabular
    from hpsearch.train.image.trainer import fit as fit_image
    from hpsearch.train.core.loop import EpochResult
    from hpsearch.train.core.losses import ProbabilityMSELoss, SoftF1Loss, build_loss
    from hpsearch.train.tabular.model import (
        DropConnectLinear,
        GeneralRelu,
        HiddenBlock,
        TabularMLP,
        build_model,
    )
    from hpsearch.train.core.optim import (
        LrSchedule,
        build_optimizer,
        build_schedule,
        timm_optimizer_name,
    )
    from hpsearch.analysis.predictions import WORST_KEPT, ValPredictions
    from hpsearch.train.core.dispatch import FITTERS, fitter, train
    from hpsearch.train.core.rebuild import rebuild_model, validate
    from hpsearch.train.core.weights import WeightsCallback
    from hpsearch.train.core.costs import model_costs
    from hpsearch.train.tabular.trainer import fit

# Imported when first used: ``hpsearch.analysis.predictions`` (numpy only) must stay importable
# without torch, for the service and the error-analysis report.
_WHERE = {
    "fit_audio": ("hpsearch.train.audio.trainer", "fit"),
    "DEFAULTS": ("hpsearch.train.core.config", "DEFAULTS"),
    "TrainConfig": ("hpsearch.train.core.config", "TrainConfig"),
    "parse_config": ("hpsearch.train.core.config", "parse_config"),
    "TabularData": ("hpsearch.train.tabular.data", "TabularData"),
    "TabularSplit": ("hpsearch.train.tabular.data", "TabularSplit"),
    "load_tabular": ("hpsearch.train.tabular.data", "load_tabular"),
    "fit_image": ("hpsearch.train.image.trainer", "fit"),
    "EpochResult": ("hpsearch.train.core.loop", "EpochResult"),
    "ProbabilityMSELoss": ("hpsearch.train.core.losses", "ProbabilityMSELoss"),
    "SoftF1Loss": ("hpsearch.train.core.losses", "SoftF1Loss"),
    "build_loss": ("hpsearch.train.core.losses", "build_loss"),
    "DropConnectLinear": ("hpsearch.train.tabular.model", "DropConnectLinear"),
    "GeneralRelu": ("hpsearch.train.tabular.model", "GeneralRelu"),
    "HiddenBlock": ("hpsearch.train.tabular.model", "HiddenBlock"),
    "TabularMLP": ("hpsearch.train.tabular.model", "TabularMLP"),
    "build_model": ("hpsearch.train.tabular.model", "build_model"),
    "LrSchedule": ("hpsearch.train.core.optim", "LrSchedule"),
    "build_optimizer": ("hpsearch.train.core.optim", "build_optimizer"),
    "build_schedule": ("hpsearch.train.core.optim", "build_schedule"),
    "timm_optimizer_name": ("hpsearch.train.core.optim", "timm_optimizer_name"),
    "WORST_KEPT": ("hpsearch.analysis.predictions", "WORST_KEPT"),
    "ValPredictions": ("hpsearch.analysis.predictions", "ValPredictions"),
    "FITTERS": ("hpsearch.train.core.dispatch", "FITTERS"),
    "fitter": ("hpsearch.train.core.dispatch", "fitter"),
    "train": ("hpsearch.train.core.dispatch", "train"),
    "rebuild_model": ("hpsearch.train.core.rebuild", "rebuild_model"),
    "validate": ("hpsearch.train.core.rebuild", "validate"),
    "WeightsCallback": ("hpsearch.train.core.weights", "WeightsCallback"),
    "model_costs": ("hpsearch.train.core.costs", "model_costs"),
    "fit": ("hpsearch.train.tabular.trainer", "fit"),
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
    "WeightsCallback",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "fit",
    "fit_audio",
    "fit_image",
    "fitter",
    "load_tabular",
    "model_costs",
    "parse_config",
    "rebuild_model",
    "timm_optimizer_name",
    "train",
    "validate",
]
