"""The audio trainer's knobs: the names of ``search_spaces/audio.yaml``, typed and validated.

``optim.*``, ``sched.*``, ``loss.*`` and most of ``train.*`` mean what they mean for the tabular
trainer (:mod:`hpsearch.train.core.config`); the model, input and augmentation sections are the
audio ones. Defaults are the audio space's defaults. Unknown keys and bad values raise
``ValueError`` naming the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpsearch.train.core.config import (
    ACTIVATIONS,
    INITS,
    NORMS,
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
    "AUDIO_DEFAULTS",
    "N_MELS",
    "AudioConfig",
    "AudioInputConfig",
    "AudioLoopConfig",
    "AudioModelConfig",
    "AugmentConfig",
    "parse_audio_config",
]

#: Mel-band counts the spectrogram may have.
N_MELS = (16, 32, 64, 128)


@dataclass(frozen=True)
class AudioInputConfig:
    """``input.*``: the log-mel spectrogram's frequency resolution."""

    n_mels: int = 64

    def __post_init__(self) -> None:
        check_choice("input.n_mels", self.n_mels, N_MELS)


@dataclass(frozen=True)
class AudioModelConfig:
    """``model.*``: the spectrogram CNN (or, with ``name``, a timm model)."""

    #: ``cnn`` (the small CNN built here) or any name in ``timm.list_models()``; a timm model
    #: takes ``dropout`` and ``stochastic_depth`` (and ``coordconv``), but not the CNN's shape
    #: knobs.
    name: str = "cnn"
    width: int = 64
    depth: int = 3
    init: str = "default"
    activation: str = "relu"
    residual: bool = False
    stochastic_depth: float = 0.0
    coordconv: bool = False
    norm: str = "batch"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_at_least("model.width", self.width, 1)
        check_at_least("model.depth", self.depth, 1, note="(conv blocks)")
        check_choice("model.init", self.init, INITS)
        check_choice("model.activation", self.activation, ACTIVATIONS)
        check_choice("model.norm", self.norm, NORMS)
        check_in_range("model.dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_in_range("model.stochastic_depth", self.stochastic_depth, 0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class AudioLoopConfig(LoopConfig):
    """``train.*``: the tabular loop's knobs plus mixed precision."""

    batch_size: int = 32
    amp: bool = True


@dataclass(frozen=True)
class AugmentConfig:
    """``aug.*``: SpecAugment widths (0 = off) and Mixup."""

    time_warp: int = 0
    time_mask: int = 20
    freq_mask: int = 8
    mixup: bool = False
    mixup_alpha: float = 0.2

    def __post_init__(self) -> None:
        check_at_least("aug.time_warp", self.time_warp, 0, note="(0 = off)")
        check_at_least("aug.time_mask", self.time_mask, 0, note="(0 = off)")
        check_at_least("aug.freq_mask", self.freq_mask, 0, note="(0 = off)")
        check_positive("aug.mixup_alpha", self.mixup_alpha)


@dataclass(frozen=True)
class AudioConfig:
    """Every knob of the audio trainer, grouped by the section of its ``section.knob`` name."""

    optim: OptimConfig = dataclasses.field(
        default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=1e-4)
    )
    sched: SchedConfig = dataclasses.field(default_factory=SchedConfig)
    model: AudioModelConfig = dataclasses.field(default_factory=AudioModelConfig)
    input: AudioInputConfig = dataclasses.field(default_factory=AudioInputConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: AudioLoopConfig = dataclasses.field(default_factory=AudioLoopConfig)
    aug: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)


#: Knobs of the shared sections that the audio trainer does not implement.
_NOT_AUDIO = frozenset({"loss.activation_reg"})

#: Every knob the audio trainer reads, ``section.knob`` -> default.
AUDIO_DEFAULTS: dict[str, Any] = knob_defaults(AudioConfig, exclude=_NOT_AUDIO)


def parse_audio_config(config: Mapping[str, Any]) -> AudioConfig:
    """Validate a resolved config (``{"aug.time_mask": 20, ...}``) and fill in the defaults.

    Raises ``ValueError`` for a key the audio trainer does not know and for a bad value.
    """
    return parse_sections(
        AudioConfig,
        config,
        known=AUDIO_DEFAULTS,
        trainer="the audio trainer",
        family="audio_classification",
    )
