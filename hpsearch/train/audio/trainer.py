"""The audio_classification trainer: log-mel spectrograms, a CNN, SpecAugment and Mixup.

Same contract as the tabular :func:`hpsearch.train.tabular.trainer.fit`: the config, task and device are
checked (and the spectrograms computed) when :func:`fit` is called; one
:class:`~hpsearch.train.core.loop.EpochResult` per epoch follows as the iterator is consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from hpsearch.families import TaskSpec
from hpsearch.train.audio.config import AudioConfig, parse_audio_config
from hpsearch.train.audio.data import AudioSplit, load_audio_data
from hpsearch.train.audio.model import build_audio_model
from hpsearch.train.core.checkpoint import Checkpoint
from hpsearch.train.core.costs import CostMeter, CostsCallback
from hpsearch.train.core.loop import EpochResult, evaluate, run_epochs
from hpsearch.train.core.losses import build_loss
from hpsearch.train.core.optim import build_optimizer, timm_optimizer_name
from hpsearch.train.core.predict import PredictionsCallback, predictor
from hpsearch.train.core.rebuild import Validation
from hpsearch.train.core.weights import WeightsCallback
from hpsearch.train.core.dispatch import check_family
from hpsearch.train.core.device import autocast, cpu_amp_dtype, resolve_device, start_run
from hpsearch.train.audio.specaugment import SpecAugment

__all__ = ["autocast_dtype", "fit", "validation"]

#: Spectrograms per forward pass when scoring the validation split.
_EVAL_CHUNK = 256


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` gives on ``device``: bf16 where the GPU has it, else
    fp16 (with loss scaling); off CUDA ``None`` (fp32) unless ``HPSEARCH_CPU_AMP=1`` opts in
    to bf16 (:func:`~hpsearch.train.core.device.cpu_amp_dtype`); ``None`` without amp."""
    if not amp:
        return None
    if device.type != "cuda":
        return cpu_amp_dtype()
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


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
    """Train an audio classifier, yielding an :class:`EpochResult` after every epoch.

    ``task.dataset`` is ``tones`` (generated) or a folder of class subfolders of WAV files.
    Raises ``ValueError`` (naming the knob or the dataset) before any training for a bad
    config, task or device; :class:`~hpsearch.errors.TrainingDiverged` when the loss stops
    being finite. With a ``checkpoint`` the run saves its state after every epoch and resumes
    from a saved one (:func:`hpsearch.train.core.loop.run_epochs`). ``predictions`` gets the final
    model's :class:`~hpsearch.analysis.predictions.ValPredictions` once the last result is
    consumed; its ``worst_files`` are paths inside the dataset folder, or
    ``"<dataset>#<index in the validation split>"`` for a generated dataset. ``weights`` then
    gets the final model's CPU state dict. ``costs`` gets ``{params, size_mb, latency_ms}``
    once, before anything trains (:func:`hpsearch.train.train`).
    """
    cfg = parse_audio_config(config)
    check_family(task, "audio_classification", "hpsearch.train.audio.trainer")
    timm_optimizer_name(cfg.optim.name)  # an unknown optimizer fails before the data loads
    dev, generator = start_run(device, seed)
    autocast_dtype(dev, cfg.train.amp)  # a bad HPSEARCH_CPU_AMP fails before the data loads
    data = load_audio_data(task.dataset, n_mels=cfg.input.n_mels, val_fraction=task.val_fraction)
    _, _, n_mels, n_frames = data.train.x.shape
    model = build_audio_model(
        cfg.model, n_mels=n_mels, n_frames=n_frames, n_classes=data.n_classes
    ).to(dev)
    return _epochs(
        cfg,
        model,
        data.train.to(dev),
        data.val.to(dev),
        classes=data.classes,
        epochs=task.epochs,
        generator=generator,
        checkpoint=checkpoint,
        predictions=predictions,
        weights=weights,
        costs=costs,
        val_ids=data.val_files or [f"{task.dataset}#{i}" for i in range(len(data.val.y))],
        meta={"dataset": task.dataset, "sample_rate": data.sample_rate},
    )


def _epochs(
    cfg: AudioConfig,
    model: nn.Module,
    train_set: AudioSplit,
    val_set: AudioSplit,
    *,
    classes: tuple[str, ...],
    epochs: int,
    generator: torch.Generator,
    checkpoint: Checkpoint | None,
    predictions: PredictionsCallback | None,
    weights: WeightsCallback | None,
    costs: CostsCallback | None,
    val_ids: Sequence[str],
    meta: dict[str, Any],
) -> Iterator[EpochResult]:
    n_classes = len(classes)
    device = train_set.y.device
    optimizer = build_optimizer(model, cfg.optim)
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
    amp_dtype = autocast_dtype(device, cfg.train.amp)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(device, non_blocking=True)
        x, y = augment(train_set.x[idx]), train_set.y[idx]
        if mixup is None:
            with autocast(device, amp_dtype):
                logits = model(x)
            # The loss in fp32 outside autocast, as the image trainer does.
            return loss_fn(logits.float(), y)
        # Mixing the two losses, not the labels: equal to label mixing for CE (label
        # smoothing included), and it works for every loss.
        lam = mixup.sample().item()
        perm = torch.randperm(len(y), generator=generator).to(device)
        with autocast(device, amp_dtype):
            logits = model(lam * x + (1 - lam) * x[perm])
        logits = logits.float()
        return lam * loss_fn(logits, y) + (1 - lam) * loss_fn(logits, y[perm])

    val_logits = _val_outputs(val_set, amp_dtype)

    def worst_files(worst: np.ndarray) -> dict[str, Any]:
        return {"worst_files": [val_ids[i] for i in worst.tolist()]}

    yield from run_epochs(
        model,
        optimizer,
        loop=cfg.train,
        sched=cfg.sched.name,
        epochs=epochs,
        generator=generator,
        train_y=train_set.y,
        batch_loss=batch_loss,
        val_y=val_set.y,
        val_logits=val_logits,
        eval_chunk=_EVAL_CHUNK,
        amp_dtype=amp_dtype,
        on_epoch_start=lambda _epoch: augment.train(),
        checkpoint=checkpoint,
        predict=predictor(
            predictions,
            family="audio_classification",
            worst_inputs=worst_files,
            class_names=classes,
            meta=meta,
        ),
        keep_weights=weights,
        costs=CostMeter(device=device, callback=costs),
    )


def _val_outputs(
    val_set: AudioSplit, amp_dtype: torch.dtype | None
) -> Callable[[nn.Module, slice], torch.Tensor]:
    """A model's logits of a slice of the validation spectrograms: what the metric scores."""
    device = val_set.y.device

    def val_logits(evaluated: nn.Module, rows: slice) -> torch.Tensor:
        # No augmentation here: SpecAugment is applied to training batches only.
        with autocast(device, amp_dtype):
            return evaluated(val_set.x[rows])

    return val_logits


def validation(
    config: Mapping[str, Any], task: TaskSpec, *, device: str | None = None
) -> Validation:
    """The model of ``config`` (untrained) and the validation spectrograms as :func:`fit`
    scores them (:func:`hpsearch.train.core.rebuild.validation`)."""
    cfg = parse_audio_config(config)
    check_family(task, "audio_classification", "hpsearch.train.audio.trainer")
    dev = resolve_device(device)
    data = load_audio_data(task.dataset, n_mels=cfg.input.n_mels, val_fraction=task.val_fraction)
    _, _, n_mels, n_frames = data.train.x.shape
    model = build_audio_model(cfg.model, n_mels=n_mels, n_frames=n_frames, n_classes=data.n_classes)
    val_set = data.val.to(dev)
    return Validation(
        model=model.to(dev),
        val_y=val_set.y,
        outputs=_val_outputs(val_set, autocast_dtype(dev, cfg.train.amp)),
        chunk=_EVAL_CHUNK,
        score=evaluate,
    )
