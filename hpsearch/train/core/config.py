"""The trainer's knobs: a resolved search-space config turned into a typed, validated config.

A search space names its parameters ``section.knob`` (``optim.lr``, ``model.width``...). Any knob
missing from the config takes its default here: a conditional parameter that is inactive, or one
the space does not search. Unknown keys and bad values raise ``ValueError`` naming the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpsearch.train.core.knobs import (
    check_at_least,
    check_choice,
    check_in_range,
    check_positive,
    knob_defaults,
    parse_sections,
)

__all__ = [
    "ACTIVATIONS",
    "DEFAULTS",
    "INITS",
    "LOSSES",
    "NORMALIZATIONS",
    "NORMS",
    "REGRESSION_DEFAULTS",
    "REGRESSION_LOSSES",
    "SCHEDULES",
    "InputConfig",
    "LoopConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "RegressionConfig",
    "RegressionLossConfig",
    "SchedConfig",
    "TrainConfig",
    "parse_config",
    "parse_regression_config",
]

SCHEDULES = ("constant", "cosine", "step", "onecycle", "flatcos")
ACTIVATIONS = ("relu", "relu-0.5", "gelu", "silu", "mish", "glu")
NORMS = ("none", "batch", "layer")
INITS = ("default", "xavier", "kaiming")
NORMALIZATIONS = ("standard", "quantile", "rankgauss")
LOSSES = ("ce", "mse", "soft_f1")
REGRESSION_LOSSES = ("mse", "huber", "l1")


@dataclass(frozen=True)
class OptimConfig:
    """``optim.*``: the optimizer and its hyperparameters.

    ``name`` is ``sgd``, ``adam``, ``adamw`` or any name ``timm.optim.list_optimizers()`` lists;
    it is checked against timm's registry when the optimizer is built.
    """

    name: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-5

    def __post_init__(self) -> None:
        check_positive("optim.lr", self.lr)
        check_in_range("optim.momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_in_range("optim.beta1", self.beta1, 0.0, 1.0, high_open=True)
        check_in_range("optim.beta2", self.beta2, 0.0, 1.0, high_open=True)
        check_positive("optim.eps", self.eps)
        check_at_least("optim.weight_decay", self.weight_decay, 0)


@dataclass(frozen=True)
class SchedConfig:
    """``sched.*``: the learning-rate schedule over the whole run (stepped per optimizer update)."""

    name: str = "cosine"

    def __post_init__(self) -> None:
        check_choice("sched.name", self.name, SCHEDULES)


@dataclass(frozen=True)
class ModelConfig:
    """``model.*``: the MLP's shape, activation, regularization, normalization and init."""

    width: int = 128
    depth: int = 2
    activation: str = "relu"
    dropout: float = 0.1
    dropconnect: float = 0.0
    norm: str = "batch"
    init: str = "default"
    residual: bool = False
    stochastic_depth: float = 0.0
    embedding_dim: int = 8

    def __post_init__(self) -> None:
        check_at_least("model.width", self.width, 1)
        check_at_least("model.depth", self.depth, 1, note="(hidden layers)")
        check_choice("model.activation", self.activation, ACTIVATIONS)
        check_in_range("model.dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_in_range("model.dropconnect", self.dropconnect, 0.0, 1.0, high_open=True)
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.init", self.init, INITS)
        check_in_range("model.stochastic_depth", self.stochastic_depth, 0.0, 1.0, high_open=True)
        check_at_least("model.embedding_dim", self.embedding_dim, 1)


@dataclass(frozen=True)
class InputConfig:
    """``input.*``: how numeric input columns are scaled (fitted on the training split only)."""

    normalization: str = "standard"

    def __post_init__(self) -> None:
        check_choice("input.normalization", self.normalization, NORMALIZATIONS)


@dataclass(frozen=True)
class LossConfig:
    """``loss.*``: the training loss and the penalties added to it."""

    name: str = "ce"
    label_smoothing: float = 0.0
    activation_reg: float = 0.0

    def __post_init__(self) -> None:
        check_choice("loss.name", self.name, LOSSES)
        check_in_range("loss.label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        check_at_least("loss.activation_reg", self.activation_reg, 0)


@dataclass(frozen=True)
class LoopConfig:
    """``train.*``: batching, sampling, clipping, EMA and gradient accumulation."""

    batch_size: int = 64
    balanced_sampler: bool = False
    grad_clip: float = 0.0
    ema: bool = False
    ema_decay: float = 0.998
    grad_accum: int = 1

    def __post_init__(self) -> None:
        check_at_least("train.batch_size", self.batch_size, 1)
        check_at_least("train.grad_clip", self.grad_clip, 0, note="(0 = off)")
        check_in_range("train.ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)
        check_at_least("train.grad_accum", self.grad_accum, 1)


@dataclass(frozen=True)
class PretrainConfig:
    """``pretrain.*``: denoising-autoencoder pretraining of the MLP's hidden stack (0 epochs = off).

    ``noise`` is the share of input cells swapped with the same column of another row (swap
    noise, which corrupts numeric and categorical columns alike); with ``tie_weights`` the
    decoder uses the encoder's transposed weights instead of its own.
    """

    dae_epochs: int = 0
    noise: float = 0.15
    tie_weights: bool = False

    def __post_init__(self) -> None:
        check_at_least("pretrain.dae_epochs", self.dae_epochs, 0, note="(0 = off)")
        check_in_range("pretrain.noise", self.noise, 0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the trainer, grouped by the section of its ``section.knob`` name."""

    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    sched: SchedConfig = dataclasses.field(default_factory=SchedConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)


@dataclass(frozen=True)
class RegressionLossConfig:
    """``loss.*`` of tabular_regression: the loss on the standardized target, and the AR penalty.

    ``huber`` is smooth L1 with delta 1 (one standard deviation of the target).
    """

    name: str = "mse"
    activation_reg: float = 0.0

    def __post_init__(self) -> None:
        check_choice("loss.name", self.name, REGRESSION_LOSSES)
        check_at_least("loss.activation_reg", self.activation_reg, 0)


@dataclass(frozen=True)
class RegressionConfig(TrainConfig):
    """The knobs of tabular_regression: the classifier's, with a regression loss section and
    without the class-only knobs (label smoothing, balanced sampling)."""

    loss: RegressionLossConfig = dataclasses.field(  # type: ignore[assignment]
        default_factory=RegressionLossConfig
    )


#: Every knob the trainer reads, ``section.knob`` -> default.
DEFAULTS: dict[str, Any] = knob_defaults(TrainConfig)

#: Every knob of tabular_regression, ``section.knob`` -> default.
REGRESSION_DEFAULTS: dict[str, Any] = knob_defaults(
    RegressionConfig, exclude=("train.balanced_sampler",)
)


def parse_config(config: Mapping[str, Any]) -> TrainConfig:
    """Validate a resolved config (``{"optim.lr": 1e-3, ...}``) and fill in the defaults.

    Raises ``ValueError`` for a key the trainer does not know (so a typo in a search space
    fails the first trial instead of being silently ignored) and for a bad value.
    """
    return parse_sections(TrainConfig, config, known=DEFAULTS, trainer="the trainer")


def parse_regression_config(config: Mapping[str, Any]) -> RegressionConfig:
    """:func:`parse_config` for tabular_regression (:data:`REGRESSION_DEFAULTS`)."""
    return parse_sections(
        RegressionConfig,
        config,
        known=REGRESSION_DEFAULTS,
        trainer="the trainer",
        family="tabular_regression",
    )
