"""The image trainer's knobs: the names of ``search_spaces/image.yaml``, typed and validated.

``optim.*``, ``sched.*``, ``loss.*`` and most of ``train.*`` mean what they mean for the tabular
trainer (:mod:`hpsearch.train.core.config`); ``model.*``, ``transfer.*``, ``input.*`` and ``aug.*``
are the image ones. Defaults are the image space's defaults, except ``input.image_size``, which
defaults to the model's own input size. Unknown keys and bad values raise ``ValueError`` naming
the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpsearch.train.core.config import (
    LoopConfig,
    LossConfig,
    OptimConfig,
    SchedConfig,
)
from hpsearch.train.core.knobs import (
    check_at_least,
    check_choice,
    check_in_range,
    check_positive,
    knob_defaults,
    parse_sections,
)

__all__ = [
    "AUG_POLICIES",
    "IMAGE_DEFAULTS",
    "MIN_IMAGE_SIZE",
    "ImageAugmentConfig",
    "ImageConfig",
    "ImageInputConfig",
    "ImageLoopConfig",
    "ImageModelConfig",
    "TransferConfig",
    "parse_image_config",
]

#: ``aug.policy`` values and the timm ``auto_augment`` string each one means.
AUG_POLICIES: dict[str, str | None] = {
    "none": None,
    "randaugment": "rand-m9-mstd0.5",
    "autoaugment": "original",
    "augmix": "augmix-m5-w4-d2",
}

#: Smallest ``input.image_size``: below it most backbones downsample the image away.
MIN_IMAGE_SIZE = 16


@dataclass(frozen=True)
class ImageModelConfig:
    """``model.*``: the timm backbone and its regularization.

    ``name`` is any ``timm.list_models()`` name (checked when the model is built).
    """

    name: str = "resnet18"
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        check_in_range("model.drop_rate", self.drop_rate, 0.0, 1.0, high_open=True)
        check_in_range("model.drop_path_rate", self.drop_path_rate, 0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class TransferConfig:
    """``transfer.*``: start from pretrained weights, and train only the head for a while."""

    pretrained: bool = True
    freeze_epochs: int = 1

    def __post_init__(self) -> None:
        check_at_least("transfer.freeze_epochs", self.freeze_epochs, 0, note="(0 = never frozen)")


@dataclass(frozen=True)
class ImageInputConfig:
    """``input.*``: the side of the square images; ``None`` is the model's own input size."""

    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.image_size is not None:
            check_at_least("input.image_size", self.image_size, MIN_IMAGE_SIZE)


@dataclass(frozen=True)
class ImageLoopConfig(LoopConfig):
    """``train.*``: the tabular loop's knobs plus mixed precision."""

    amp: bool = True


@dataclass(frozen=True)
class ImageAugmentConfig:
    """``aug.*``: an automatic policy, Cutout (random erasing), Mixup and CutMix."""

    policy: str = "none"
    cutout: float = 0.0
    mixup: bool = False
    mixup_alpha: float = 0.2
    cutmix: bool = False
    cutmix_alpha: float = 1.0

    def __post_init__(self) -> None:
        check_choice("aug.policy", self.policy, AUG_POLICIES)
        check_in_range("aug.cutout", self.cutout, 0.0, 1.0)
        check_positive("aug.mixup_alpha", self.mixup_alpha)
        check_positive("aug.cutmix_alpha", self.cutmix_alpha)


@dataclass(frozen=True)
class ImageConfig:
    """Every knob of the image trainer, grouped by the section of its ``section.knob`` name."""

    optim: OptimConfig = dataclasses.field(
        default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=1e-2)
    )
    sched: SchedConfig = dataclasses.field(default_factory=SchedConfig)
    model: ImageModelConfig = dataclasses.field(default_factory=ImageModelConfig)
    transfer: TransferConfig = dataclasses.field(default_factory=TransferConfig)
    input: ImageInputConfig = dataclasses.field(default_factory=ImageInputConfig)
    loss: LossConfig = dataclasses.field(default_factory=lambda: LossConfig(label_smoothing=0.1))
    train: ImageLoopConfig = dataclasses.field(default_factory=ImageLoopConfig)
    aug: ImageAugmentConfig = dataclasses.field(default_factory=ImageAugmentConfig)


#: Knobs of the shared sections that the image trainer does not implement.
_NOT_IMAGE = frozenset({"loss.activation_reg"})

#: Every knob the image trainer reads, ``section.knob`` -> default.
IMAGE_DEFAULTS: dict[str, Any] = knob_defaults(ImageConfig, exclude=_NOT_IMAGE)


def parse_image_config(config: Mapping[str, Any]) -> ImageConfig:
    """Validate a resolved config (``{"aug.policy": "randaugment", ...}``) and fill in defaults.

    Raises ``ValueError`` for a key the image trainer does not know and for a bad value.
    """
    return parse_sections(
        ImageConfig,
        config,
        known=IMAGE_DEFAULTS,
        trainer="the image trainer",
        family="image_classification",
    )
