"""The image_classification trainer: a timm backbone on digits or an image folder.

Same contract as the tabular :func:`hpsearch.train.tabular.trainer.fit`: the config, task and device are
checked (and the images decoded) when :func:`fit` is called; one
:class:`~hpsearch.train.core.loop.EpochResult` per epoch follows as the iterator is consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dataclasses

import numpy as np
import torch
from timm.data import Mixup, resolve_data_config
from torch import nn
from torchvision.transforms.functional import to_pil_image

from hpsearch.families import TaskSpec
from hpsearch.train.core.checkpoint import Checkpoint
from hpsearch.train.core.costs import CostMeter, CostsCallback
from hpsearch.train.image.augment import build_mixup, build_train_transform
from hpsearch.train.image.config import ImageConfig, parse_image_config
from hpsearch.train.image.data import (
    ImageData,
    ImageSource,
    ImageSplit,
    load_images,
    open_image_source,
)
from hpsearch.train.image.model import (
    BACKBONE_LR_SCALE,
    build_image_model,
    check_pretrained_weights,
    scale_backbone_lr,
    set_backbone_frozen,
)
from hpsearch.train.core.loop import EpochResult, evaluate, run_epochs
from hpsearch.train.core.losses import build_loss
from hpsearch.train.core.optim import build_optimizer, timm_optimizer_name
from hpsearch.train.core.predict import PredictionsCallback, predictor
from hpsearch.train.core.rebuild import Validation
from hpsearch.train.core.weights import WeightsCallback
from hpsearch.train.core.dispatch import check_family
from hpsearch.train.core.device import autocast, cpu_amp_dtype, resolve_device, start_run

__all__ = ["autocast_dtype", "fit", "validation"]

#: Images per forward pass when scoring the validation split.
_EVAL_CHUNK = 256


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` gives: fp16 (with loss scaling) on CUDA; off CUDA
    ``None`` (fp32) unless ``HPSEARCH_CPU_AMP=1`` opts in to bf16
    (:func:`~hpsearch.train.core.device.cpu_amp_dtype`); ``None`` without amp."""
    if not amp:
        return None
    return torch.float16 if device.type == "cuda" else cpu_amp_dtype()


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
    """Train an image classifier, yielding an :class:`EpochResult` after every epoch.

    ``task.dataset`` is ``digits`` (the bundled 8x8 digits, upsampled) or a folder with one
    subfolder of images per class. With ``transfer.pretrained`` the backbone's weights come from
    ``task.pretrained_weights`` (a local file, or ``'hub'``). Raises ``ValueError`` (naming the
    knob, the dataset or the weights) before any training for a bad config, task or device;
    :class:`~hpsearch.errors.TrainingDiverged` when the loss stops being finite. With a
    ``checkpoint`` the run saves its state after every epoch and resumes from a saved one
    (:func:`hpsearch.train.core.loop.run_epochs`). ``predictions`` gets the final model's
    :class:`~hpsearch.analysis.predictions.ValPredictions` once the last result is consumed; its
    ``worst_images`` are the validation images as decoded (resized and cropped, not normalized
    or augmented). ``weights`` then gets the final model's CPU state dict. ``costs`` gets
    ``{params, size_mb, latency_ms}`` once, before anything trains (:func:`hpsearch.train.train`).
    """
    cfg = parse_image_config(config)
    check_family(task, "image_classification", "hpsearch.train.image.trainer")
    timm_optimizer_name(cfg.optim.name)  # an unknown optimizer fails before the data loads
    check_pretrained_weights(cfg.transfer, task.pretrained_weights, cfg.model.name)
    dev, generator = start_run(device, seed)
    autocast_dtype(dev, cfg.train.amp)  # a bad HPSEARCH_CPU_AMP fails before the data loads
    source = open_image_source(task.dataset)
    model = build_image_model(
        cfg.model, cfg.transfer, n_classes=source.n_classes, weights=task.pretrained_weights
    )
    data_cfg, image_size, data = _images_for(model, cfg, source, task)
    interpolation = data_cfg.get("interpolation", "bicubic")
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
        data.val.to(dev),
        normalize=_Normalize(data_cfg["mean"], data_cfg["std"], dev),
        transform=transform,
        classes=data.classes,
        epochs=task.epochs,
        generator=generator,
        checkpoint=checkpoint,
        predictions=predictions,
        weights=weights,
        costs=costs,
        meta={"dataset": task.dataset, "image_size": image_size},
    )


class _Normalize:
    """uint8 images -> float, scaled with the model's mean and std, on the device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def _epochs(
    cfg: ImageConfig,
    model: nn.Module,
    train_set: ImageSplit,
    val_set: ImageSplit,
    *,
    normalize: _Normalize,
    transform: Callable | None,
    classes: tuple[str, ...],
    epochs: int,
    generator: torch.Generator,
    checkpoint: Checkpoint | None,
    predictions: PredictionsCallback | None,
    weights: WeightsCallback | None,
    costs: CostsCallback | None,
    meta: dict[str, Any],
) -> Iterator[EpochResult]:
    n_classes = len(classes)
    device = val_set.y.device
    # Without per-image augmentation, the training images live on the device like the
    # validation ones; with it, they stay on the CPU where the PIL transforms run.
    if transform is None:
        moved = train_set.to(device)
        train_x, train_y = moved.x, moved.y
    else:
        train_x, train_y = train_set.x, train_set.y.to(device)
    optimizer = build_optimizer(model, cfg.optim)
    if cfg.transfer.pretrained:
        scale_backbone_lr(optimizer, model, BACKBONE_LR_SCALE)
    mixup = build_mixup(
        cfg.aug,
        label_smoothing=cfg.loss.label_smoothing if cfg.loss.name == "ce" else 0.0,
        n_classes=n_classes,
    )
    loss_fn = build_loss(cfg.loss, n_classes, soft_targets=mixup is not None)
    amp_dtype = autocast_dtype(device, cfg.train.amp)
    freeze_epochs = cfg.transfer.freeze_epochs if cfg.transfer.pretrained else 0

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x, y = _batch(train_x, train_y, idx, normalize, transform, device, mixup)
        if mixup is not None:
            x, y = mixup(x, y)
        with autocast(device, amp_dtype):
            logits = model(x)
        # The loss (softmax, logs, its batch reduction) in fp32 outside autocast: bf16 keeps
        # about 3 significant digits, too few for soft-F1's sums over the batch.
        return loss_fn(logits.float(), y)

    val_logits = _val_outputs(val_set, normalize, amp_dtype)

    def worst_images(worst: np.ndarray) -> dict[str, Any]:
        images = val_set.x[torch.from_numpy(worst).to(device)]
        return {"worst_images": images.permute(0, 2, 3, 1).cpu().numpy()}

    yield from run_epochs(
        model,
        optimizer,
        loop=cfg.train,
        sched=cfg.sched.name,
        epochs=epochs,
        generator=generator,
        train_y=train_y,
        batch_loss=batch_loss,
        val_y=val_set.y,
        val_logits=val_logits,
        eval_chunk=_EVAL_CHUNK,
        amp_dtype=amp_dtype,
        on_epoch_start=lambda epoch: set_backbone_frozen(model, epoch <= freeze_epochs),
        checkpoint=checkpoint,
        predict=predictor(
            predictions,
            family="image_classification",
            worst_inputs=worst_images,
            class_names=classes,
            meta=meta,
        ),
        keep_weights=weights,
        costs=CostMeter(device=device, callback=costs),
    )


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


def _images_for(
    model: nn.Module, cfg: ImageConfig, source: ImageSource, task: TaskSpec
) -> tuple[dict[str, Any], int, ImageData]:
    """The model's data config (timm's mean, std, interpolation), the image size and the
    task's images decoded and split at that size."""
    data_cfg = resolve_data_config({}, model=model)
    image_size = cfg.input.image_size or data_cfg["input_size"][-1]
    data = load_images(
        source,
        image_size=image_size,
        val_fraction=task.val_fraction,
        interpolation=data_cfg.get("interpolation", "bicubic"),
    )
    return data_cfg, image_size, data


def _val_outputs(
    val_set: ImageSplit, normalize: _Normalize, amp_dtype: torch.dtype | None
) -> Callable[[nn.Module, slice], torch.Tensor]:
    """A model's logits of a slice of the validation images: what the metric scores."""
    device = val_set.y.device

    def val_logits(evaluated: nn.Module, rows: slice) -> torch.Tensor:
        # No augmentation here.
        with autocast(device, amp_dtype):
            return evaluated(normalize(val_set.x[rows]))

    return val_logits


def validation(
    config: Mapping[str, Any], task: TaskSpec, *, device: str | None = None
) -> Validation:
    """The model of ``config`` (untrained, never loading pretrained weights: kept weights
    replace them) and the validation images as :func:`fit` scores them
    (:func:`hpsearch.train.core.rebuild.validation`)."""
    cfg = parse_image_config(config)
    check_family(task, "image_classification", "hpsearch.train.image.trainer")
    dev = resolve_device(device)
    source = open_image_source(task.dataset)
    untrained = dataclasses.replace(cfg.transfer, pretrained=False)
    model = build_image_model(cfg.model, untrained, n_classes=source.n_classes, weights=None)
    data_cfg, _size, data = _images_for(model, cfg, source, task)
    val_set = data.val.to(dev)
    normalize = _Normalize(data_cfg["mean"], data_cfg["std"], dev)
    return Validation(
        model=model.to(dev),
        val_y=val_set.y,
        outputs=_val_outputs(val_set, normalize, autocast_dtype(dev, cfg.train.amp)),
        chunk=_EVAL_CHUNK,
        score=evaluate,
    )
