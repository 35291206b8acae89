"""Which trainer trains a task family, and :func:`train`, the entry point workers call."""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from hpsearch.families import FAMILY_METRICS, METRICS, TaskSpec
from hpsearch.train.core.checkpoint import Checkpoint
from hpsearch.train.core.loop import EpochResult
from hpsearch.analysis.predictions import ValPredictions
from hpsearch.train.core.weights import WeightsCallback

__all__ = ["FITTERS", "check_family", "fitter", "train"]

#: The ``fit`` of each task family, as ``module:function`` (imported when first used).
FITTERS: dict[str, str] = {
    "tabular_classification": "hpsearch.train.tabular.trainer:fit",
    "tabular_regression": "hpsearch.train.tabular.trainer:fit_regression",
    "audio_classification": "hpsearch.train.audio.trainer:fit",
    "image_classification": "hpsearch.train.image.trainer:fit",
}


def fitter(family: str | None) -> Callable[..., Iterator[EpochResult]]:
    """The ``fit(config, task, *, seed, device, checkpoint, predictions, costs, weights)``
    that trains ``family`` (tabular when None)."""
    ref = FITTERS.get(family or "tabular_classification")
    if ref is None:
        raise ValueError(f"no trainer for task family {family!r}; trained: {', '.join(FITTERS)}")
    module_name, _, name = ref.partition(":")
    return getattr(importlib.import_module(module_name), name)


def check_family(task: TaskSpec, family: str, trainer: str) -> None:
    """``ValueError`` unless ``task.family`` is ``family``, the one the module ``trainer`` trains,
    or unset (a task whose family is unset takes it from its space)."""
    if task.family not in (None, family):
        raise ValueError(
            f"task family {task.family!r} is not trained by {trainer}; it trains {family}"
        )


def train(
    config: dict[str, Any],
    task: TaskSpec,
    report: Callable[[float, int], None],
    *,
    metric: str = "val_accuracy",
    seed: int | None = None,
    device: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    predictions: Callable[[ValPredictions], None] | None = None,
    metrics: Callable[[int, dict[str, float]], None] | None = None,
    costs: Callable[[dict[str, float]], None] | None = None,
    weights: WeightsCallback | None = None,
) -> float:
    """Train the task's model with ``config`` and return the final epoch's ``metric``.

    After every epoch the validation ``metric`` (one the family reports:
    :data:`hpsearch.families.FAMILY_METRICS`) goes to
    ``report(value, epoch)``, epochs counting from 1; an exception ``report`` raises (such as
    ``optuna.TrialPruned``) stops training and propagates. Knobs missing from ``config`` take
    their defaults (:data:`hpsearch.train.DEFAULTS`). With a ``seed`` a CPU run is
    deterministic. ``device=None`` picks CUDA when available.

    With a ``checkpoint`` path (its folder is created when missing) the training state is saved
    there after every epoch, replacing the file atomically. When the file already holds the
    state of this run (same config, task, metric and seed) after epoch k, training resumes at
    epoch k + 1 and only epochs k + 1.. are reported: a retried trial keeps the values its
    first attempt reported. A file that is unreadable or from another run is ignored with a
    logged warning (training starts over and overwrites it). The file is kept after training;
    deleting it is the caller's choice.

    ``predictions``, when given, is called once with the
    :class:`~hpsearch.analysis.predictions.ValPredictions` of the final model on the validation
    split (the weights the last reported metric was computed with: EMA weights when
    ``train.ema`` is on), after the last epoch's ``report`` returned; not when ``report``
    raised (a pruned trial) or training failed. A run resumed from a checkpoint of its last
    epoch predicts from the restored weights. An exception it raises propagates.

    ``weights``, when given, is called once under the same rule, after ``predictions``, with
    those same final weights as a CPU state dict (``{name: tensor}``, buffers such as batch-norm
    statistics included, ready for ``safetensors.torch.save_file``): what
    :func:`hpsearch.train.rebuild_model` rebuilds and :func:`hpsearch.train.validate` scores
    to the last reported metric.

    ``metrics``, when given, gets ``(epoch, every metric of the epoch)`` before each
    ``report``; an exception it raises stops training and propagates, as ``report``'s does.

    Every epoch's metrics include what the model costs (:data:`hpsearch.families.COST_METRICS`:
    ``params``, ``size_mb``, ``latency_ms``, ``peak_mem_mb``), so ``metric`` may be one of them.
    ``costs``, when given, is called exactly once with ``{params, size_mb, latency_ms}``,
    measured on the built model on its device before the first epoch trains (before the
    tabular DAE pretraining too), also when resuming from a checkpoint; an exception it raises
    (a constraint the model breaks) stops training before any epoch, nothing is reported, and
    it propagates. ``peak_mem_mb`` is only known per epoch.

    Raises ``ValueError`` for an unknown metric or one the family does not report, a dataset,
    device, config key or value, and
    :class:`hpsearch.errors.TrainingDiverged` when the loss stops being finite.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: the trainer reports {sorted(METRICS)}")
    family = task.family or "tabular_classification"
    reported = FAMILY_METRICS.get(family, tuple(METRICS))
    if metric not in reported:
        raise ValueError(
            f"metric {metric!r} is not reported for {family}: use one of {list(reported)}"
        )
    saved = (
        Checkpoint.for_run(checkpoint, config=config, task=task, metric=metric, seed=seed)
        if checkpoint is not None
        else None
    )
    value = math.nan
    epochs = fitter(task.family)(
        config,
        task,
        seed=seed,
        device=device,
        checkpoint=saved,
        predictions=predictions,
        costs=costs,
        weights=weights,
    )
    for result in epochs:
        value = result.metrics[metric]
        if metrics is not None:  # every metric of the epoch, before the report
            metrics(result.epoch, dict(result.metrics))
        report(value, result.epoch)
    if math.isnan(value) and saved is not None and saved.resumed_metrics is not None:
        # The checkpoint was of the last epoch (the first attempt stopped after training but
        # before the trial was told): nothing is left to train or report.
        value = saved.resumed_metrics[metric]
    return value
