"""Image augmentation through timm: a policy and Cutout per image, Mixup and CutMix per batch.

The per-image pipeline is ``timm.data.create_transform(is_training=True)`` with the geometry
held fixed (full-image crop, no flip, no color jitter), so ``aug.policy`` and ``aug.cutout``
add exactly what they name: RandAugment (``rand-m9-mstd0.5``), AutoAugment (``original``) or
AugMix (``augmix-m5-w4-d2``), and timm's ``RandomErasing``. It runs on PIL images, so it is
built only when one of them is on; otherwise images go straight from uint8 to normalized.
"""

from __future__ import annotations

from collections.abc import Callable

from timm.data import Mixup, create_transform

from hpsearch.train.image.config import AUG_POLICIES, ImageAugmentConfig

__all__ = ["build_mixup", "build_train_transform"]


def build_train_transform(
    aug: ImageAugmentConfig,
    image_size: int,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bicubic",
) -> Callable | None:
    """timm's training transform (PIL image -> normalized tensor) for ``aug.policy`` and
    ``aug.cutout``; ``None`` when both are off."""
    policy = AUG_POLICIES[aug.policy]
    if policy is None and aug.cutout == 0:
        return None
    return create_transform(
        (3, image_size, image_size),
        is_training=True,
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        hflip=0.0,
        color_jitter=None,  # type: ignore[arg-type]  # timm's code takes None: no jitter
        auto_augment=policy,
        interpolation=interpolation,
        mean=mean,
        std=std,
        re_prob=aug.cutout,
    )


def build_mixup(aug: ImageAugmentConfig, *, label_smoothing: float, n_classes: int) -> Mixup | None:
    """timm's ``Mixup`` for ``aug.mixup`` / ``aug.cutmix`` (both on: one or the other per batch,
    evenly); ``None`` when both are off. Its targets are soft, label smoothing included: train
    on them with :func:`~hpsearch.train.core.losses.build_loss` ``(soft_targets=True)``."""
    if not (aug.mixup or aug.cutmix):
        return None
    return Mixup(
        mixup_alpha=aug.mixup_alpha if aug.mixup else 0.0,
        cutmix_alpha=aug.cutmix_alpha if aug.cutmix else 0.0,
        switch_prob=0.5,
        label_smoothing=label_smoothing,
        num_classes=n_classes,
    )
