"""The image_classification trainer: a timm backbone on digits or an image folder.

Same contract as the tabular :func:`hpsearch.train.loop.fit`: the config, task and device are
checked (and the images decoded) when :func:`fit` is called; one
:class:`~hpsearch.train.loop.EpochResult` per epoch follows as the iterator is consumed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import Mixup, resolve_data_config
from timm.utils import ModelEmaV3
from torch import nn
from torchvision.transforms.functional import to_pil_image

from hpsearch.errors import TrainingDiverged
from hpsearch.tasks import TaskSpec
from hpsearch.train.image_augment import build_mixup, build_soft_target_loss, build_train_transform
from hpsearch.train.image_config import ImageConfig, parse_image_config
from hpsearch.train.image_data import ImageSplit, load_images, open_image_source
from hpsearch.train.image_model import (
    BACKBONE_LR_SCALE,
    build_image_model,
    check_pretrained_weights,
    scale_backbone_lr,
    set_backbone_frozen,
)
from hpsearch.train.loop import EpochResult
from hpsearch.train.losses import build_loss
from hpsearch.train.optim import build_optimizer, build_schedule, timm_optimizer_name
from hpsearch.train.runtime import make_generator, resolve_device, seed_everything
from hpsearch.train.sampling import batches_per_epoch, class_balance_weights, epoch_batches

__all__ = ["autocast_dtype", "fit"]

#: Images per forward pass when scoring the validation split.
_EVAL_CHUNK = 256


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` gives: fp16 (with loss scaling) on CUDA, bf16 on CPU;
    ``None`` (full precision) without amp."""
    if not amp:
        return None
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def fit(
    config: Mapping[str, Any],
    task: TaskSpec,
    *,
    seed: int | None = None,
    device: str | None = None,
) -> Iterator[EpochResult]:
    """Train an image classifier, yielding an :class:`EpochResult` after every epoch.

    ``task.dataset`` is ``digits`` (the bundled 8x8 digits, upsampled) or a folder with one
    subfolder of images per class. With ``transfer.pretrained`` the backbone's weights come from
    ``task.pretrained_weights`` (a local file, or ``'hub'``). Raises ``ValueError`` (naming the
    knob, the dataset or the weights) before any training for a bad config, task or device;
    :class:`~hpsearch.errors.TrainingDiverged` when the loss stops being finite.
    """
    cfg = parse_image_config(config)
    if task.family not in (None, "image_classification"):
        raise ValueError(
            f"task family {task.family!r} is not trained by hpsearch.train.image; "
            "it trains image_classification"
        )
    timm_optimizer_name(cfg.optim.name)  # an unknown optimizer fails before the data loads
    check_pretrained_weights(cfg.transfer, task.pretrained_weights)
    dev = resolve_device(device)
    if seed is not None:
        seed_everything(seed)
    generator = make_generator(seed)
    source = open_image_source(task.dataset)
    model = build_image_model(
        cfg.model, cfg.transfer, n_classes=source.n_classes, weights=task.pretrained_weights
    )
    data_cfg = resolve_data_config({}, model=model)
    image_size = cfg.input.image_size or data_cfg["input_size"][-1]
    interpolation = data_cfg.get("interpolation", "bicubic")
    data = load_images(
        source, image_size=image_size, val_fraction=task.val_fraction, interpolation=interpolation
    )
    transform = build_train_transform(
        cfg.aug,
        image_size,
        mean=data_cfg["mean"],
        std=data_cfg["std"],
        interpolation=interpolation,
    )
    return _epochs(
        cfg,
        model.to(dev),
        data.train,
        _to(data.val, dev),
        normalize=_Normalize(data_cfg["mean"], data_cfg["std"], dev),
        transform=transform,
        n_classes=data.n_classes,
        epochs=task.epochs,
        generator=generator,
    )


class _Normalize:
    """uint8 images -> float, scaled with the model's mean and std, on the device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def _to(split: ImageSplit, device: torch.device) -> ImageSplit:
    if device.type != "cuda":
        return split
    # The whole split moves once (uint8, so small); pinning makes that copy asynchronous.
    return ImageSplit(
        x=split.x.pin_memory().to(device, non_blocking=True),
        y=split.y.pin_memory().to(device, non_blocking=True),
    )


def _epochs(
    cfg: ImageConfig,
    model: nn.Module,
    train_set: ImageSplit,
    val_set: ImageSplit,
    *,
    normalize: _Normalize,
    transform: Callable | None,
    n_classes: int,
    epochs: int,
    generator: torch.Generator,
) -> Iterator[EpochResult]:
    loop = cfg.train
    device = val_set.y.device
    # Without per-image augmentation, the training images live on the device like the
    # validation ones; with it, they stay on the CPU where the PIL transforms run.
    train_x = train_set.x if transform is not None else _to(train_set, device).x
    train_y = _to(train_set, device).y
    n_rows = len(train_y)
    n_batches = batches_per_epoch(n_rows, loop.batch_size)
    optimizer = build_optimizer(model, cfg.optim)
    if cfg.transfer.pretrained:
        scale_backbone_lr(optimizer, model, BACKBONE_LR_SCALE)
    schedule = build_schedule(
        optimizer,
        cfg.sched.name,
        epochs=epochs,
        updates_per_epoch=-(-n_batches // loop.grad_accum),
    )
    mixup = build_mixup(
        cfg.aug,
        label_smoothing=cfg.loss.label_smoothing if cfg.loss.name == "ce" else 0.0,
        n_classes=n_classes,
    )
    loss_fn = (
        build_soft_target_loss(cfg.loss) if mixup is not None else build_loss(cfg.loss, n_classes)
    )
    amp_dtype = autocast_dtype(device, loop.amp)
    # fp16 needs loss scaling to keep small gradients from underflowing; bf16 does not.
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    # No decay warmup: timm's warmup would cap the decay below train.ema_decay for thousands of
    # updates, so in short trials the knob would change nothing.
    ema = ModelEmaV3(model, decay=loop.ema_decay) if loop.ema else None
    weights = class_balance_weights(train_set.y) if loop.balanced_sampler else None
    freeze_epochs = cfg.transfer.freeze_epochs if cfg.transfer.pretrained else 0
    num_updates = 0
    lr = optimizer.param_groups[0]["lr"]

    for epoch in range(1, epochs + 1):
        model.train()
        set_backbone_frozen(model, epoch <= freeze_epochs)
        batches = epoch_batches(n_rows, loop.batch_size, generator=generator, weights=weights)
        # Summed on the device and read once per epoch: a per-batch .item() would sync the GPU.
        loss_sum = torch.zeros((), device=device)
        for start in range(0, len(batches), loop.grad_accum):
            group = batches[start : start + loop.grad_accum]
            for idx in group:
                x, y = _batch(train_x, train_y, idx, normalize, transform, device, mixup)
                if mixup is not None:
                    x, y = mixup(x, y)
                with _autocast(device, amp_dtype):
                    loss = loss_fn(model(x), y)
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
        evaluated = ema.module if ema is not None else model
        metrics = _evaluate(evaluated, val_set, normalize, amp_dtype)
        if not math.isfinite(metrics["val_loss"]):
            raise TrainingDiverged(
                f"validation loss is {metrics['val_loss']} after epoch {epoch} "
                f"(training loss {train_loss}); try a lower optim.lr or train.grad_clip > 0"
            )
        yield EpochResult(epoch=epoch, train_loss=train_loss, metrics=metrics, lr=lr)


def _batch(
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    normalize: _Normalize,
    transform: Callable | None,
    device: torch.device,
    mixup: Mixup | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if mixup is not None and len(idx) % 2:
        idx = idx[:-1]  # timm's Mixup pairs each image with its mirror in the batch
    if transform is None:
        idx = idx.to(device, non_blocking=True)
        return normalize(x[idx]), y[idx]
    images = torch.stack([transform(to_pil_image(x[i])) for i in idx.tolist()])
    return images.to(device, non_blocking=True), y[idx.to(device, non_blocking=True)]


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def _evaluate(
    model: nn.Module, split: ImageSplit, normalize: _Normalize, amp_dtype: torch.dtype | None
) -> dict[str, float]:
    # No augmentation here. val_loss is plain CE on logits whatever the training loss, so
    # trials compare on one scale.
    model.eval()
    device = split.y.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = len(split.y)
    for start in range(0, n, _EVAL_CHUNK):
        rows = slice(start, start + _EVAL_CHUNK)
        with _autocast(device, amp_dtype):
            logits = model(normalize(split.x[rows]))
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, split.y[rows], reduction="sum")
        correct += (logits.argmax(dim=1) == split.y[rows]).sum()
    return {"val_accuracy": correct.item() / n, "val_loss": loss_sum.item() / n}
