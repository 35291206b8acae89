"""The epoch loop: train on the training split, score the validation split, report each epoch."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch import nn

from hpsearch.errors import TrainingDiverged
from hpsearch.tasks import METRICS, TaskSpec
from hpsearch.train.config import TrainConfig, parse_config
from hpsearch.train.data import TabularSplit, load_tabular
from hpsearch.train.losses import build_loss
from hpsearch.train.models import TabularMLP, build_model
from hpsearch.train.optim import build_optimizer, build_schedule, timm_optimizer_name
from hpsearch.train.runtime import make_generator, resolve_device, seed_everything
from hpsearch.train.sampling import batches_per_epoch, class_balance_weights, epoch_batches

__all__ = ["EpochResult", "fit", "fitter", "train"]

#: Rows per forward pass when scoring the validation split (bounds memory on big tables).
_EVAL_CHUNK = 8192


@dataclass(frozen=True)
class EpochResult:
    """What one epoch produced."""

    epoch: int  # counting from 1
    train_loss: float  # mean training loss over the epoch's batches, penalties included
    metrics: dict[str, float]  # every metric in hpsearch.tasks.METRICS, on the validation split
    lr: float  # the learning rate of the epoch's last optimizer update (first param group)


@dataclass(frozen=True)
class _Tensors:
    x_num: torch.Tensor
    x_cat: torch.Tensor
    y: torch.Tensor

    @classmethod
    def of(cls, split: TabularSplit, device: torch.device) -> _Tensors:
        def move(a: Any) -> torch.Tensor:
            t = torch.tensor(a)  # a copy: the cached arrays are read-only and shared
            if device.type == "cuda":
                # The whole table moves once; pinning makes that copy asynchronous.
                t = t.pin_memory().to(device, non_blocking=True)
            return t

        return cls(move(split.x_num), move(split.x_cat), move(split.y))


def _check_task(task: TaskSpec) -> None:
    # A task whose family is unset takes it from its space; this trainer knows one family.
    if task.family not in (None, "tabular_classification"):
        raise ValueError(
            f"task family {task.family!r} is not trained by hpsearch.train; "
            "it trains tabular_classification"
        )


def fit(
    config: Mapping[str, Any],
    task: TaskSpec,
    *,
    seed: int | None = None,
    device: str | None = None,
) -> Iterator[EpochResult]:
    """Train as :func:`train` does, yielding an :class:`EpochResult` after every epoch.

    The config, task and device are checked (and the data loaded) when this is called; the
    training itself runs as the iterator is consumed, so a caller can stop after any epoch.
    """
    cfg = parse_config(config)
    _check_task(task)
    timm_optimizer_name(cfg.optim.name)  # an unknown optimizer fails before the data loads
    dev = resolve_device(device)
    if seed is not None:
        seed_everything(seed)
    generator = make_generator(seed)
    data = load_tabular(
        task.dataset, val_fraction=task.val_fraction, normalization=cfg.input.normalization
    )
    model = build_model(
        cfg.model,
        n_numeric=data.train.x_num.shape[1],
        cardinalities=data.cardinalities,
        n_classes=data.n_classes,
    ).to(dev)
    return _epochs(
        cfg,
        model,
        _Tensors.of(data.train, dev),
        _Tensors.of(data.val, dev),
        n_classes=data.n_classes,
        epochs=task.epochs,
        generator=generator,
    )


def _epochs(
    cfg: TrainConfig,
    model: TabularMLP,
    train_set: _Tensors,
    val_set: _Tensors,
    *,
    n_classes: int,
    epochs: int,
    generator: torch.Generator,
) -> Iterator[EpochResult]:
    loop = cfg.train
    device = train_set.y.device
    n_rows = len(train_set.y)
    n_batches = batches_per_epoch(n_rows, loop.batch_size)
    updates_per_epoch = -(-n_batches // loop.grad_accum)
    optimizer = build_optimizer(model, cfg.optim)
    schedule = build_schedule(
        optimizer, cfg.sched.name, epochs=epochs, updates_per_epoch=updates_per_epoch
    )
    loss_fn = build_loss(cfg.loss, n_classes)
    # No decay warmup: timm's warmup would cap the decay below train.ema_decay for thousands of
    # updates, so in short trials the knob would change nothing.
    ema = ModelEmaV3(model, decay=loop.ema_decay) if loop.ema else None
    weights = class_balance_weights(train_set.y.cpu()) if loop.balanced_sampler else None
    num_updates = 0

    for epoch in range(1, epochs + 1):
        model.train()
        batches = epoch_batches(n_rows, loop.batch_size, generator=generator, weights=weights)
        # Summed on the device and read once per epoch: a per-batch .item() would sync the GPU.
        loss_sum = torch.zeros((), device=device)
        for start in range(0, len(batches), loop.grad_accum):
            group = batches[start : start + loop.grad_accum]
            for idx in group:
                idx = idx.to(device, non_blocking=True)
                hidden = model.forward_features(train_set.x_num[idx], train_set.x_cat[idx])
                loss = loss_fn(model.head(hidden), train_set.y[idx])
                if cfg.loss.activation_reg > 0:
                    loss = loss + cfg.loss.activation_reg * hidden.pow(2).mean()
                # Dividing by the group size makes the accumulated gradient a mean over the
                # micro-batches, as if they were one batch.
                (loss / len(group)).backward()
                loss_sum += loss.detach()
            if loop.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            num_updates += 1
            lr = optimizer.param_groups[0]["lr"]
            schedule.step(num_updates)
            if ema is not None:
                ema.update(model, step=num_updates)

        # One non-finite batch makes the epoch's sum non-finite, so checking once per epoch
        # catches every divergence without a GPU sync per batch.
        train_loss = loss_sum.item() / len(batches)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training loss is {train_loss} in epoch {epoch}; "
                "try a lower optim.lr or train.grad_clip > 0"
            )
        metrics = _evaluate(ema.module if ema is not None else model, val_set)
        if not math.isfinite(metrics["val_loss"]):
            raise TrainingDiverged(
                f"validation loss is {metrics['val_loss']} after epoch {epoch} "
                f"(training loss {train_loss}); try a lower optim.lr or train.grad_clip > 0"
            )
        yield EpochResult(epoch=epoch, train_loss=train_loss, metrics=metrics, lr=lr)


@torch.no_grad()
def _evaluate(model: nn.Module, split: _Tensors) -> dict[str, float]:
    # val_loss is plain CE on logits whatever the training loss, so trials that train with
    # different losses are still scored on the same scale.
    model.eval()
    loss_sum = torch.zeros((), device=split.y.device)
    correct = torch.zeros((), device=split.y.device, dtype=torch.int64)
    n = len(split.y)
    for start in range(0, n, _EVAL_CHUNK):
        rows = slice(start, start + _EVAL_CHUNK)
        logits = model(split.x_num[rows], split.x_cat[rows]).float()
        loss_sum += F.cross_entropy(logits, split.y[rows], reduction="sum")
        correct += (logits.argmax(dim=1) == split.y[rows]).sum()
    return {"val_accuracy": correct.item() / n, "val_loss": loss_sum.item() / n}


#: The ``fit`` of each task family, as ``module:function`` (imported when first used).
FITTERS: dict[str, str] = {
    "tabular_classification": "hpsearch.train.loop:fit",
    "audio_classification": "hpsearch.train.audio:fit",
    "image_classification": "hpsearch.train.image:fit",
}


def fitter(family: str | None) -> Callable[..., Iterator[EpochResult]]:
    """The ``fit(config, task, *, seed, device)`` that trains ``family`` (tabular when None)."""
    ref = FITTERS.get(family or "tabular_classification")
    if ref is None:
        raise ValueError(f"no trainer for task family {family!r}; trained: {', '.join(FITTERS)}")
    module_name, _, name = ref.partition(":")
    return getattr(importlib.import_module(module_name), name)


def train(
    config: dict[str, Any],
    task: TaskSpec,
    report: Callable[[float, int], None],
    *,
    metric: str = "val_accuracy",
    seed: int | None = None,
    device: str | None = None,
) -> float:
    """Train the task's model with ``config`` and return the final epoch's ``metric``.

    After every epoch the validation ``metric`` (``val_accuracy`` or ``val_loss``) goes to
    ``report(value, epoch)``, epochs counting from 1; an exception ``report`` raises (such as
    ``optuna.TrialPruned``) stops training and propagates. Knobs missing from ``config`` take
    their defaults (:data:`hpsearch.train.DEFAULTS`). With a ``seed`` a CPU run is
    deterministic. ``device=None`` picks CUDA when available.

    Raises ``ValueError`` for an unknown metric, dataset, device, config key or value, and
    :class:`hpsearch.errors.TrainingDiverged` when the loss stops being finite.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: the trainer reports {sorted(METRICS)}")
    value = math.nan
    for result in fitter(task.family)(config, task, seed=seed, device=device):
        value = result.metrics[metric]
        report(value, result.epoch)
    return value
