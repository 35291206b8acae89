"""The tabular trainers: an MLP on a table, through the shared epoch loop.

:func:`fit` trains tabular_classification, :func:`fit_regression` tabular_regression (the same
MLP with one output, on the standardized target). Each checks the config, task and device (and
loads the data) when it is called; one :class:`~hpsearch.train.core.loop.EpochResult` per epoch
follows as the iterator is consumed. With ``pretrain.dae_epochs`` the encoder is first
pretrained as a denoising autoencoder on the training rows (:mod:`hpsearch.train.core.pretrain`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hpsearch.families import TaskSpec
from hpsearch.train.core.checkpoint import Checkpoint
from hpsearch.train.core.config import TrainConfig, parse_config, parse_regression_config
from hpsearch.train.core.costs import CostMeter, CostsCallback
from hpsearch.train.tabular.data import TabularData, TabularSplit, load_tabular
from hpsearch.train.core.loop import EpochResult, evaluate, evaluate_regression, run_epochs
from hpsearch.train.core.losses import build_loss, build_regression_loss
from hpsearch.train.tabular.model import TabularMLP, build_model
from hpsearch.train.core.optim import build_optimizer, timm_optimizer_name
from hpsearch.train.core.predict import PredictionsCallback, predictor
from hpsearch.train.core.pretrain import pretrain_dae
from hpsearch.train.core.rebuild import Validation
from hpsearch.train.core.weights import WeightsCallback
from hpsearch.train.core.dispatch import check_family
from hpsearch.train.core.device import start_run

__all__ = [
    "TabularRun",
    "TabularTensors",
    "fit",
    "fit_regression",
    "prepare",
    "tabular_loss",
    "validation",
    "validation_regression",
]

#: Rows per forward pass when scoring the validation split (bounds memory on big tables).
_EVAL_CHUNK = 8192


@dataclass(frozen=True)
class TabularTensors:
    """One split's numeric features, categorical codes and labels as tensors on the device."""

    x_num: torch.Tensor
    x_cat: torch.Tensor
    y: torch.Tensor

    @classmethod
    def of(cls, split: TabularSplit, device: torch.device) -> TabularTensors:
        """Copy ``split`` to ``device``."""

        def move(a: Any) -> torch.Tensor:
            t = torch.tensor(a)  # a copy: the cached arrays are read-only and shared
            if device.type == "cuda":
                # The whole table moves once; pinning makes that copy asynchronous.
                t = t.pin_memory().to(device, non_blocking=True)
            return t

        return cls(move(split.x_num), move(split.x_cat), move(split.y))


@dataclass(frozen=True)
class TabularRun:
    """A seeded run ready to train: the data, the model on its device, the data-order RNG."""

    data: TabularData
    model: TabularMLP
    device: torch.device
    generator: torch.Generator


def prepare(
    cfg: TrainConfig,
    task: TaskSpec,
    *,
    seed: int | None,
    device: str | None,
    regression: bool = False,
) -> TabularRun:
    """Resolve the device, seed the run, load the task's table and build the model on it (one
    output when ``regression``).

    Shared by :func:`fit` and the LR range test, so both train the same model on the same data.
    """
    dev, generator = start_run(device, seed)
    data = load_tabular(
        task.dataset,
        val_fraction=task.val_fraction,
        normalization=cfg.input.normalization,
        target=task.target,
        regression=regression,
    )
    model = build_model(
        cfg.model,
        n_numeric=data.train.x_num.shape[1],
        cardinalities=data.cardinalities,
        n_classes=1 if regression else data.n_classes,
    ).to(dev)
    return TabularRun(data=data, model=model, device=dev, generator=generator)


def tabular_loss(
    model: TabularMLP,
    loss_fn: nn.Module,
    rows: TabularTensors,
    idx: torch.Tensor,
    *,
    activation_reg: float,
) -> torch.Tensor:
    """The training loss of rows ``idx``, plus ``loss.activation_reg`` times the mean squared
    hidden activation (the penalty needs the activations, so it is not part of ``loss_fn``)."""
    idx = idx.to(rows.y.device, non_blocking=True)
    hidden = model.forward_features(rows.x_num[idx], rows.x_cat[idx])
    loss = loss_fn(model.head(hidden), rows.y[idx])
    if activation_reg > 0:
        loss = loss + activation_reg * hidden.pow(2).mean()
    return loss


def fit(
    config: Mapping[str, Any],
    task: TaskSpec,
    *,
    seed: int | None = None,
    device: str | None = None,
    checkpoint: Checkpoint | None = None,
    predictions: PredictionsCallback | None = None,
    weights: WeightsCallback | None = None,
    costs: CostsCallback | None = None,
) -> Iterator[EpochResult]:
    """Train as :func:`hpsearch.train.train` does, yielding an :class:`EpochResult` after every
    epoch.

    The config, task and device are checked (and the data loaded) when this is called; the
    training itself runs as the iterator is consumed, so a caller can stop after any epoch.
    With a ``checkpoint`` the run saves its state after every epoch and resumes from a saved
    one (:func:`hpsearch.train.core.loop.run_epochs`); a resumed run skips the DAE pretraining,
    whose result is in the saved weights. ``predictions`` gets the final model's
    :class:`~hpsearch.analysis.predictions.ValPredictions` once the last result is consumed;
    ``worst_rows`` are the validation rows as read (numeric columns unscaled, categorical ones
    as codes, whose values are in ``meta["categories"]``). ``weights`` then gets the final
    model's CPU state dict (:func:`hpsearch.train.core.loop.run_epochs`). ``costs`` gets
    ``{params, size_mb, latency_ms}`` once, before anything trains (:func:`hpsearch.train.train`).
    """
    cfg = parse_config(config)
    check_family(task, "tabular_classification", "hpsearch.train")
    timm_optimizer_name(cfg.optim.name)  # an unknown optimizer fails before the data loads
    run = prepare(cfg, task, seed=seed, device=device)
    return _epochs(
        cfg,
        run,
        loss_fn=build_loss(cfg.loss, run.data.n_classes),
        task=task,
        checkpoint=checkpoint,
        predictions=predictions,
        weights=weights,
        costs=costs,
    )


def fit_regression(
    config: Mapping[str, Any],
    task: TaskSpec,
    *,
    seed: int | None = None,
    device: str | None = None,
    checkpoint: Checkpoint | None = None,
    predictions: PredictionsCallback | None = None,
    weights: WeightsCallback | None = None,
    costs: CostsCallback | None = None,
) -> Iterator[EpochResult]:
    """:func:`fit` for tabular_regression: the MLP with one output, trained with ``loss.name``
    (``mse``, ``huber``, ``l1``) on the target standardized with the training split's mean and
    standard deviation; reports ``val_rmse``, ``val_mae`` and ``val_loss`` (MSE) in those units.
    Its ``predictions`` are in the target's own units.
    """
    cfg = parse_regression_config(config)
    check_family(task, "tabular_regression", "hpsearch.train.tabular.trainer.fit_regression")
    timm_optimizer_name(cfg.optim.name)
    run = prepare(cfg, task, seed=seed, device=device, regression=True)
    return _epochs(
        cfg,
        run,
        loss_fn=build_regression_loss(cfg.loss),
        task=task,
        regression=True,
        checkpoint=checkpoint,
        predictions=predictions,
        weights=weights,
        costs=costs,
    )


def _epochs(
    cfg: TrainConfig,
    run: TabularRun,
    *,
    loss_fn: nn.Module,
    task: TaskSpec,
    regression: bool = False,
    checkpoint: Checkpoint | None = None,
    predictions: PredictionsCallback | None = None,
    weights: WeightsCallback | None = None,
    costs: CostsCallback | None = None,
) -> Iterator[EpochResult]:
    model, generator, data = run.model, run.generator, run.data
    train_set = TabularTensors.of(data.train, run.device)
    val_set = TabularTensors.of(data.val, run.device)
    # What the model costs, measured before anything trains (the DAE pretraining included), so
    # a constraint it breaks (``costs`` raising) ends the run before it spends any time.
    meter = CostMeter(device=run.device, callback=costs)
    meter.measure(model, _val_outputs(val_set))
    # Pretraining runs as the iterator starts, on the training rows only (labels unused), so
    # the supervised optimizer below sees the pretrained encoder. A resumed run skips it: the
    # checkpoint holds the weights (and the generator state) that came after it.
    if checkpoint is None or checkpoint.load(model) is None:
        pretrain_dae(
            model,
            train_set.x_num,
            train_set.x_cat,
            cfg.pretrain,
            lr=cfg.optim.lr,
            batch_size=cfg.train.batch_size,
            generator=generator,
        )
    optimizer = build_optimizer(model, cfg.optim)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        return tabular_loss(model, loss_fn, train_set, idx, activation_reg=cfg.loss.activation_reg)

    val_logits = _val_outputs(val_set)

    def worst_rows(worst: np.ndarray) -> dict[str, Any]:
        assert data.val_raw is not None  # load_tabular always keeps the raw validation rows
        return {"worst_rows": data.val_raw[worst], "feature_names": list(data.feature_names)}

    categorical = data.feature_names[len(data.feature_names) - len(data.categories) :]
    predict = predictor(
        predictions,
        family="tabular_regression" if regression else "tabular_classification",
        worst_inputs=worst_rows,
        class_names=data.classes or None,
        target_scale=(data.y_mean, data.y_std) if regression else None,
        meta={
            "dataset": task.dataset,
            "categories": {name: list(v) for name, v in zip(categorical, data.categories)},
        },
    )
    yield from run_epochs(
        model,
        optimizer,
        loop=cfg.train,
        sched=cfg.sched.name,
        epochs=task.epochs,
        generator=generator,
        train_y=train_set.y,
        batch_loss=batch_loss,
        val_y=val_set.y,
        val_logits=val_logits,
        eval_chunk=_EVAL_CHUNK,
        score=evaluate_regression if regression else None,
        checkpoint=checkpoint,
        predict=predict,
        keep_weights=weights,
        costs=meter,
    )


def _val_outputs(val_set: TabularTensors) -> Callable[[nn.Module, slice], torch.Tensor]:
    """A model's outputs of a slice of the validation rows: what the metric scores."""

    def val_logits(evaluated: nn.Module, rows: slice) -> torch.Tensor:
        return evaluated(val_set.x_num[rows], val_set.x_cat[rows])

    return val_logits


def validation(
    config: Mapping[str, Any],
    task: TaskSpec,
    *,
    device: str | None = None,
    regression: bool = False,
) -> Validation:
    """The model of ``config`` (untrained) and the validation split as :func:`fit` scores it
    (:func:`hpsearch.train.core.rebuild.validation`); one output when ``regression``."""
    cfg = parse_regression_config(config) if regression else parse_config(config)
    run = prepare(cfg, task, seed=None, device=device, regression=regression)
    val_set = TabularTensors.of(run.data.val, run.device)
    return Validation(
        model=run.model,
        val_y=val_set.y,
        outputs=_val_outputs(val_set),
        chunk=_EVAL_CHUNK,
        score=evaluate_regression if regression else evaluate,
    )


def validation_regression(
    config: Mapping[str, Any], task: TaskSpec, *, device: str | None = None
) -> Validation:
    """:func:`validation` for tabular_regression."""
    return validation(config, task, device=device, regression=True)
