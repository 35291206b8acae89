"""The audio_classification trainer: log-mel spectrograms, a CNN, SpecAugment and Mixup.

Same contract as the tabular :func:`hpsearch.train.loop.fit`: the config, task and device are
checked (and the spectrograms computed) when :func:`fit` is called; one
:class:`~hpsearch.train.loop.EpochResult` per epoch follows as the iterator is consumed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch import nn

from hpsearch.errors import TrainingDiverged
from hpsearch.tasks import TaskSpec
from hpsearch.train.audio_config import AudioConfig, parse_audio_config
from hpsearch.train.audio_data import AudioSplit, load_audio_data
from hpsearch.train.audio_model import build_audio_model
from hpsearch.train.loop import EpochResult
from hpsearch.train.losses import build_loss
from hpsearch.train.optim import build_optimizer, build_schedule, timm_optimizer_name
from hpsearch.train.runtime import make_generator, resolve_device, seed_everything
from hpsearch.train.sampling import batches_per_epoch, class_balance_weights, epoch_batches
from hpsearch.train.specaugment import SpecAugment

__all__ = ["autocast_dtype", "fit"]

#: Spectrograms per forward pass when scoring the validation split.
_EVAL_CHUNK = 256


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` gives on ``device``: bf16 where the GPU has it, else
    fp16 (with loss scaling); ``None`` (full precision) without amp or off CUDA."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def fit(
    config: Mapping[str, Any],
    task: TaskSpec,
    *,
    seed: int | None = None,
    device: str | None = None,
) -> Iterator[EpochResult]:
    """Train an audio classifier, yielding an :class:`EpochResult` after every epoch.

    ``task.dataset`` is ``tones`` (generated) or a folder of class subfolders of WAV files.
    Raises ``ValueError`` (naming the knob or the dataset) before any training for a bad
    config, task or device; :class:`~hpsearch.errors.TrainingDiverged` when the loss stops
    being finite.
    """
    cfg = parse_audio_config(config)
    if task.family not in (None, "audio_classification"):
        raise ValueError(
            f"task family {task.family!r} is not trained by hpsearch.train.audio; "
            "it trains audio_classification"
        )
    timm_optimizer_name(cfg.optim.name)  # an unknown optimizer fails before the data loads
    dev = resolve_device(device)
    if seed is not None:
        seed_everything(seed)
    generator = make_generator(seed)
    data = load_audio_data(task.dataset, n_mels=cfg.input.n_mels, val_fraction=task.val_fraction)
    _, _, n_mels, n_frames = data.train.x.shape
    model = build_audio_model(
        cfg.model, n_mels=n_mels, n_frames=n_frames, n_classes=data.n_classes
    ).to(dev)
    return _epochs(
        cfg,
        model,
        _to(data.train, dev),
        _to(data.val, dev),
        n_classes=data.n_classes,
        epochs=task.epochs,
        generator=generator,
    )


def _to(split: AudioSplit, device: torch.device) -> AudioSplit:
    if device.type != "cuda":
        return split
    # The whole split moves once; pinning makes that copy asynchronous.
    return AudioSplit(
        x=split.x.pin_memory().to(device, non_blocking=True),
        y=split.y.pin_memory().to(device, non_blocking=True),
    )


def _epochs(
    cfg: AudioConfig,
    model: nn.Module,
    train_set: AudioSplit,
    val_set: AudioSplit,
    *,
    n_classes: int,
    epochs: int,
    generator: torch.Generator,
) -> Iterator[EpochResult]:
    loop = cfg.train
    device = train_set.y.device
    n_rows = len(train_set.y)
    n_batches = batches_per_epoch(n_rows, loop.batch_size)
    optimizer = build_optimizer(model, cfg.optim)
    schedule = build_schedule(
        optimizer,
        cfg.sched.name,
        epochs=epochs,
        updates_per_epoch=-(-n_batches // loop.grad_accum),
    )
    loss_fn = build_loss(cfg.loss, n_classes)
    augment = SpecAugment(
        time_warp=cfg.aug.time_warp,
        time_mask=cfg.aug.time_mask,
        freq_mask=cfg.aug.freq_mask,
        generator=generator,
    )
    mixup = (
        torch.distributions.Beta(cfg.aug.mixup_alpha, cfg.aug.mixup_alpha)
        if cfg.aug.mixup
        else None
    )
    amp_dtype = autocast_dtype(device, loop.amp)
    # fp16 needs loss scaling to keep small gradients from underflowing; bf16 does not.
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    ema = ModelEmaV3(model, decay=loop.ema_decay) if loop.ema else None
    weights = class_balance_weights(train_set.y.cpu()) if loop.balanced_sampler else None
    num_updates = 0
    lr = optimizer.param_groups[0]["lr"]

    for epoch in range(1, epochs + 1):
        model.train()
        augment.train()
        batches = epoch_batches(n_rows, loop.batch_size, generator=generator, weights=weights)
        # Summed on the device and read once per epoch: a per-batch .item() would sync the GPU.
        loss_sum = torch.zeros((), device=device)
        for start in range(0, len(batches), loop.grad_accum):
            group = batches[start : start + loop.grad_accum]
            for idx in group:
                idx = idx.to(device, non_blocking=True)
                x, y = augment(train_set.x[idx]), train_set.y[idx]
                with _autocast(device, amp_dtype):
                    if mixup is None:
                        loss = loss_fn(model(x), y)
                    else:
                        # Mixing the two losses, not the labels: equal to label mixing for CE
                        # (label smoothing included), and it works for every loss.
                        lam = mixup.sample().item()
                        perm = torch.randperm(len(y), generator=generator).to(device)
                        logits = model(lam * x + (1 - lam) * x[perm])
                        loss = lam * loss_fn(logits, y) + (1 - lam) * loss_fn(logits, y[perm])
                loss = loss.float()
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

        # One non-finite batch makes the epoch's sum non-finite: checked once per epoch.
        train_loss = loss_sum.item() / len(batches)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training loss is {train_loss} in epoch {epoch}; "
                "try a lower optim.lr or train.grad_clip > 0"
            )
        metrics = _evaluate(ema.module if ema is not None else model, val_set, amp_dtype)
        if not math.isfinite(metrics["val_loss"]):
            raise TrainingDiverged(
                f"validation loss is {metrics['val_loss']} after epoch {epoch} "
                f"(training loss {train_loss}); try a lower optim.lr or train.grad_clip > 0"
            )
        yield EpochResult(epoch=epoch, train_loss=train_loss, metrics=metrics, lr=lr)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def _evaluate(
    model: nn.Module, split: AudioSplit, amp_dtype: torch.dtype | None
) -> dict[str, float]:
    # No augmentation here: SpecAugment is applied in the training loop only. val_loss is
    # plain CE on logits whatever the training loss, so trials compare on one scale.
    model.eval()
    device = split.y.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = len(split.y)
    for start in range(0, n, _EVAL_CHUNK):
        rows = slice(start, start + _EVAL_CHUNK)
        with _autocast(device, amp_dtype):
            logits = model(split.x[rows])
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, split.y[rows], reduction="sum")
        correct += (logits.argmax(dim=1) == split.y[rows]).sum()
    return {"val_accuracy": correct.item() / n, "val_loss": loss_sum.item() / n}
