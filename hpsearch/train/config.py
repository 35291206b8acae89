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

__all__ = [
    "TrainConfig",
    "OptimConfig",
    "SchedConfig",
    "ModelConfig",
    "InputConfig",
    "LossConfig",
    "LoopConfig",
    "parse_config",
    "DEFAULTS",
    "SCHEDULES",
    "ACTIVATIONS",
    "NORMS",
    "INITS",
    "NORMALIZATIONS",
    "LOSSES",
]

SCHEDULES = ("constant", "cosine", "step", "onecycle", "flatcos")
ACTIVATIONS = ("relu", "relu-0.5", "gelu", "silu", "mish", "glu")
NORMS = ("none", "batch", "layer")
INITS = ("default", "xavier", "kaiming")
NORMALIZATIONS = ("standard", "quantile", "rankgauss")
LOSSES = ("ce", "mse", "soft_f1")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{key}` must be one of {list(choices)}, got {value!r}")


def _in_range(key: str, value: float, low: float, high: float, *, high_open: bool = False) -> None:
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise ValueError(f"`{key}` must be in [{low}, {high}{bracket}, got {value!r}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"`{key}` must be > 0, got {value!r}")


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
        _positive("optim.lr", self.lr)
        _in_range("optim.momentum", self.momentum, 0.0, 1.0, high_open=True)
        _in_range("optim.beta1", self.beta1, 0.0, 1.0, high_open=True)
        _in_range("optim.beta2", self.beta2, 0.0, 1.0, high_open=True)
        _positive("optim.eps", self.eps)
        if self.weight_decay < 0:
            raise ValueError(f"`optim.weight_decay` must be >= 0, got {self.weight_decay!r}")


@dataclass(frozen=True)
class SchedConfig:
    """``sched.*``: the learning-rate schedule over the whole run (stepped per optimizer update)."""

    name: str = "cosine"

    def __post_init__(self) -> None:
        _choice("sched.name", self.name, SCHEDULES)


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
        if self.width < 1:
            raise ValueError(f"`model.width` must be >= 1, got {self.width!r}")
        if self.depth < 1:
            raise ValueError(f"`model.depth` must be >= 1 (hidden layers), got {self.depth!r}")
        _choice("model.activation", self.activation, ACTIVATIONS)
        _in_range("model.dropout", self.dropout, 0.0, 1.0, high_open=True)
        _in_range("model.dropconnect", self.dropconnect, 0.0, 1.0, high_open=True)
        _choice("model.norm", self.norm, NORMS)
        _choice("model.init", self.init, INITS)
        _in_range("model.stochastic_depth", self.stochastic_depth, 0.0, 1.0, high_open=True)
        if self.embedding_dim < 1:
            raise ValueError(f"`model.embedding_dim` must be >= 1, got {self.embedding_dim!r}")


@dataclass(frozen=True)
class InputConfig:
    """``input.*``: how numeric input columns are scaled (fitted on the training split only)."""

    normalization: str = "standard"

    def __post_init__(self) -> None:
        _choice("input.normalization", self.normalization, NORMALIZATIONS)


@dataclass(frozen=True)
class LossConfig:
    """``loss.*``: the training loss and the penalties added to it."""

    name: str = "ce"
    label_smoothing: float = 0.0
    activation_reg: float = 0.0

    def __post_init__(self) -> None:
        _choice("loss.name", self.name, LOSSES)
        _in_range("loss.label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        if self.activation_reg < 0:
            raise ValueError(f"`loss.activation_reg` must be >= 0, got {self.activation_reg!r}")


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
        if self.batch_size < 1:
            raise ValueError(f"`train.batch_size` must be >= 1, got {self.batch_size!r}")
        if self.grad_clip < 0:
            raise ValueError(f"`train.grad_clip` must be >= 0 (0 = off), got {self.grad_clip!r}")
        _in_range("train.ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)
        if self.grad_accum < 1:
            raise ValueError(f"`train.grad_accum` must be >= 1, got {self.grad_accum!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the trainer, grouped by the section of its ``section.knob`` name."""

    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    sched: SchedConfig = dataclasses.field(default_factory=SchedConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: LoopConfig = dataclasses.field(default_factory=LoopConfig)


_SECTIONS: dict[str, type] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(TrainConfig)
}

#: Every knob the trainer reads, ``section.knob`` -> default.
DEFAULTS: dict[str, Any] = {
    f"{section}.{f.name}": f.default
    for section, cls in _SECTIONS.items()
    for f in dataclasses.fields(cls)
}


def _coerce(key: str, value: Any, kind: str) -> Any:
    # Optuna hands back Python scalars, YAML may give ints for floats; bools are ints in
    # Python, so they are refused explicitly where a number is expected.
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif kind == "str":
        if isinstance(value, str):
            return value
    raise ValueError(f"`{key}` must be a {kind}, got {value!r} ({type(value).__name__})")


def parse_config(config: Mapping[str, Any]) -> TrainConfig:
    """Validate a resolved config (``{"optim.lr": 1e-3, ...}``) and fill in the defaults.

    Raises ``ValueError`` for a key the trainer does not know (so a typo in a search space
    fails the first trial instead of being silently ignored) and for a bad value.
    """
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; the trainer knows {sorted(DEFAULTS)}")
    sections = {}
    for section, cls in _SECTIONS.items():
        kwargs = {}
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            if key in config:
                kwargs[f.name] = _coerce(key, config[key], str(f.type))
        sections[section] = cls(**kwargs)
    return TrainConfig(**sections)
