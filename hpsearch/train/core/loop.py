"""The epoch loop every task family shares: train on the training split, score the validation
split, report each epoch.

A family builds its model, optimizer and losses, then hands :func:`run_epochs` two callables:
the loss of one batch of training rows, and the logits of a slice of validation rows.
Everything between (batching, gradient accumulation, clipping, loss scaling, the schedule,
EMA weights, the divergence checks, the validation metrics) is written here once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch import nn

from hpsearch.errors import TrainingDiverged
from hpsearch.train.core.checkpoint import Checkpoint, capture_rng, restore_rng
from hpsearch.train.core.config import LoopConfig
from hpsearch.train.core.costs import CostMeter
from hpsearch.train.core.optim import build_schedule
from hpsearch.train.core.predict import Predict
from hpsearch.train.core.weights import WeightsCallback, cpu_state_dict
from hpsearch.train.core.device import CPU_AMP_ENV
from hpsearch.train.core.sampling import batches_per_epoch, class_balance_weights, epoch_batches

__all__ = ["EpochResult", "evaluate", "evaluate_regression", "run_epochs"]

#: ``evaluate(model, val_y, val_logits, chunk=...)``: the validation metrics of a model.
Evaluate = Callable[..., dict[str, float]]


@dataclass(frozen=True)
class EpochResult:
    """What one epoch produced."""

    epoch: int  # counting from 1
    train_loss: float  # mean training loss over the epoch's batches, penalties included
    metrics: dict[str, float]  # every metric the family reports (hpsearch.families.FAMILY_METRICS)
    lr: float  # the learning rate of the epoch's last optimizer update (first param group)


def run_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    loop: LoopConfig,
    sched: str,
    epochs: int,
    generator: torch.Generator,
    train_y: torch.Tensor,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    val_y: torch.Tensor,
    val_logits: Callable[[nn.Module, slice], torch.Tensor],
    eval_chunk: int,
    amp_dtype: torch.dtype | None = None,
    on_epoch_start: Callable[[int], object] | None = None,
    score: Evaluate | None = None,
    checkpoint: Checkpoint | None = None,
    predict: Predict | None = None,
    keep_weights: WeightsCallback | None = None,
    costs: CostMeter | None = None,
) -> Iterator[EpochResult]:
    """Train ``model`` for ``epochs`` epochs, yielding an :class:`EpochResult` after each.

    ``train_y`` (on the training device) gives the number of rows and, for
    ``train.balanced_sampler``, the class of each. ``batch_loss(idx)`` returns the training loss
    of the rows ``idx`` (CPU indices), penalties included, under autocast where the family uses
    it; ``val_logits(model, rows)`` the logits of a slice of validation rows, scored in chunks
    of ``eval_chunk`` rows against ``val_y``. ``sched`` is ``sched.name``; the schedule spans
    the whole run. ``amp_dtype`` float16 turns on loss scaling. ``on_epoch_start(epoch)`` runs
    after the model is put in training mode, before the epoch's batches are drawn. ``score``
    computes the validation metrics (:func:`evaluate` when None; :func:`evaluate_regression`
    for a regression target); it must report ``val_loss``.

    With a ``checkpoint``, the whole training state (weights, optimizer, schedule, loss scaler,
    EMA weights, ``generator`` and the global random states) is saved after every epoch, before
    its result is yielded. When the checkpoint already holds this run's state after epoch k,
    that state is restored and the first result yielded is epoch k + 1's (none when k is the
    last epoch): the resumed run continues exactly as the uninterrupted one would have.

    ``predict`` (:func:`hpsearch.train.core.predict.predictor`) runs once, on the validation rows
    above (``val_y``, ``val_logits``, ``eval_chunk``), with the weights
    the last epoch was scored with (the EMA weights when ``train.ema`` is on), when the caller
    asks for the result after the last one: a caller that stops early (a pruned trial) gets no
    predictions. A run resumed from a checkpoint of its last epoch trains nothing and predicts
    from the restored weights. ``keep_weights`` follows the same rule, after ``predict``: it gets
    those weights as a CPU state dict (:func:`hpsearch.train.core.weights.cpu_state_dict`).

    Every result's ``metrics`` also carry the cost metrics
    (:data:`hpsearch.families.COST_METRICS`) of ``costs``
    (:class:`~hpsearch.train.core.costs.CostMeter`; a new one on ``train_y``'s device when
    None): ``params``, ``size_mb`` and ``latency_ms`` measured once, before anything trains or
    is restored from the checkpoint (the meter's callback, if any, is called then; an exception
    it raises stops the run before its first epoch), ``peak_mem_mb`` read after each epoch.

    Raises :class:`~hpsearch.errors.TrainingDiverged` when the training or validation loss
    stops being finite.
    """
    device = train_y.device
    # The timing draws no random number and changes no weight, so a seeded run trains as it
    # would without it; it comes first so that a constraint on it costs no training.
    meter = costs if costs is not None else CostMeter(device=device)
    meter.measure(model, val_logits)
    n_rows = len(train_y)
    n_batches = batches_per_epoch(n_rows, loop.batch_size)
    remedy = "try a lower optim.lr or train.grad_clip > 0"
    if amp_dtype is not None and device.type != "cuda":
        # bf16 kernels of some CPUs return NaN weight gradients (hpsearch.train.core.device).
        remedy = f"bf16 autocast on a CPU can give NaN gradients: unset {CPU_AMP_ENV}, or {remedy}"
    schedule = build_schedule(
        optimizer, sched, epochs=epochs, updates_per_epoch=-(-n_batches // loop.grad_accum)
    )
    # fp16 needs loss scaling to keep small gradients from underflowing; bf16 does not.
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    # No decay warmup: timm's warmup would cap the decay below train.ema_decay for thousands of
    # updates, so in short trials the knob would change nothing.
    ema = ModelEmaV3(model, decay=loop.ema_decay) if loop.ema else None
    weights = class_balance_weights(train_y.cpu()) if loop.balanced_sampler else None
    num_updates = 0
    first_epoch = 1
    saved = checkpoint.load(model) if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.scheduler.load_state_dict(saved["schedule"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        if ema is not None and saved.get("ema") is not None:
            ema.load_state_dict(saved["ema"])
        generator.set_state(saved["generator"])
        restore_rng(saved["rng"], device)
        num_updates = saved["num_updates"]
        first_epoch = saved["epoch"] + 1
    lr = optimizer.param_groups[0]["lr"]

    for epoch in range(first_epoch, epochs + 1):
        model.train()
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        batches = epoch_batches(n_rows, loop.batch_size, generator=generator, weights=weights)
        # Summed on the device and read once per epoch: a per-batch .item() would sync the GPU.
        loss_sum = torch.zeros((), device=device)
        for start in range(0, len(batches), loop.grad_accum):
            group = batches[start : start + loop.grad_accum]
            for idx in group:
                loss = batch_loss(idx).float()
                # Dividing by the group size makes the accumulated gradient a mean over the
                # micro-batches, as if they were one batch.
                scaled = loss / len(group)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                loss_sum += loss.detach()
            if scaler is not None:
                scaler.unscale_(optimizer)
            if loop.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
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
            raise TrainingDiverged(f"training loss is {train_loss} in epoch {epoch}; {remedy}")
        evaluated = ema.module if ema is not None else model
        metrics = (score or evaluate)(evaluated, val_y, val_logits, chunk=eval_chunk)
        if not math.isfinite(metrics["val_loss"]):
            raise TrainingDiverged(
                f"validation loss is {metrics['val_loss']} after epoch {epoch} "
                f"(training loss {train_loss}); {remedy}"
            )
        metrics = {**metrics, **meter.epoch_costs()}
        if checkpoint is not None:
            # Saved before the result goes out: a report that stops the run (or a kill while
            # the caller handles it) still leaves this epoch resumable.
            checkpoint.save(
                {
                    "epoch": epoch,
                    "metrics": metrics,
                    "num_updates": num_updates,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "ema": ema.state_dict() if ema is not None else None,
                    "generator": generator.get_state(),
                    "rng": capture_rng(device),
                }
            )
        yield EpochResult(epoch=epoch, train_loss=train_loss, metrics=metrics, lr=lr)

    final = ema.module if ema is not None else model
    if predict is not None:
        predict(final, val_y, val_logits, eval_chunk)
    if keep_weights is not None:
        keep_weights(cpu_state_dict(final))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    y: torch.Tensor,
    logits: Callable[[nn.Module, slice], torch.Tensor],
    *,
    chunk: int,
) -> dict[str, float]:
    """``val_accuracy`` and ``val_loss`` of ``model`` in eval mode, ``chunk`` rows per forward.

    ``val_loss`` is plain CE on logits whatever the training loss, so trials that train with
    different losses (or augmentations) are still scored on the same scale.
    """
    model.eval()
    loss_sum = torch.zeros((), device=y.device)
    correct = torch.zeros((), device=y.device, dtype=torch.int64)
    n = len(y)
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        out = logits(model, rows).float()
        loss_sum += F.cross_entropy(out, y[rows], reduction="sum")
        correct += (out.argmax(dim=1) == y[rows]).sum()
    return {"val_accuracy": correct.item() / n, "val_loss": loss_sum.item() / n}


@torch.no_grad()
def evaluate_regression(
    model: nn.Module,
    y: torch.Tensor,
    outputs: Callable[[nn.Module, slice], torch.Tensor],
    *,
    chunk: int,
) -> dict[str, float]:
    """``val_rmse``, ``val_mae`` and ``val_loss`` (MSE) of ``model`` in eval mode against the
    standardized target ``y``, whatever loss trained it; ``outputs`` gives one value per row."""
    model.eval()
    sq_sum = torch.zeros((), device=y.device)
    abs_sum = torch.zeros((), device=y.device)
    n = len(y)
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        err = outputs(model, rows).float().reshape(-1) - y[rows].float()
        sq_sum += err.pow(2).sum()
        abs_sum += err.abs().sum()
    mse = sq_sum.item() / n
    return {"val_rmse": math.sqrt(mse), "val_mae": abs_sum.item() / n, "val_loss": mse}
