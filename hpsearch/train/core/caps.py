"""Hard caps on the trainer's numeric knobs: the values a worker will ever try to realize.

A search space may narrow a knob as it likes, but never past these bounds: they cover real
use generously (an MLP 16384 wide, 64 hidden layers, batches of 65536 rows) and stop a study
from asking a worker for a model that cannot fit any machine (``model.width: 1e9``) or a loop
that never ends. The service checks every space at submit (:mod:`hpsearch.studies.limits`), and the
trainer checks again when it parses a config (:func:`hpsearch.train.core.knobs.parse_sections`),
so a study stored before a cap existed fails its trial with the same one-line reason.

This module is torch-free and imports nothing of the trainer, so anything may import it.

============================  ==============  ==============================================
knob                          allowed         why this bound
============================  ==============  ==============================================
``model.width``               1..16384        MLP units per layer (a 16384² layer is 1 GB)
``model.width`` (audio)       1..1024         base channels of the CNN, doubled per block
``model.depth``               1..64           hidden layers of the MLP
``model.depth`` (audio)       1..16           conv blocks (each halves the spectrogram)
``model.embedding_dim``       1..1024         per categorical column
``train.batch_size``          1..65536        rows per step
``train.grad_accum``          1..1024         steps per optimizer update
``pretrain.dae_epochs``       0..1000         pretraining epochs before the run
``transfer.freeze_epochs``    0..100000       at most ``task.epochs``' own cap
``input.image_size``          16..2048        side of the square image in pixels
``aug.time_warp``             0..1000         frames
``aug.time_mask``             0..10000        frames
``aug.freq_mask``             0..128          mel bands (at most ``input.n_mels``)
``input.n_mels``              16..128         mel bands (the trainer takes 16, 32, 64, 128)
``optim.momentum``, betas     [0, 1)
rates, shares, decays         [0, 1)          dropout, label smoothing, EMA decay, noise...
``aug.cutout``                [0, 1]          share of the image erased
``optim.lr``, ``optim.eps``   > 0             any size costs the same (a huge LR diverges,
``aug.*_alpha``               > 0             and the trial says so)
weight decay, grad clip, AR   >= 0
============================  ==============  ==============================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["KNOB_CAPS", "FAMILY_CAPS", "Cap", "cap_for", "check_cap"]


@dataclass(frozen=True)
class Cap:
    """The closed (or, with ``low_open``/``high_open``, open-ended) range a knob may take."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        """Whether ``value`` is a finite number within the range."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """The range as ``in [low, high]`` (``(`` or ``)`` for an open end), or ``> low``."""
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return (
            f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
            f"{')' if self.high_open else ']'}"
        )


_SHARE = Cap(0.0, 1.0, high_open=True)
#: Any finite number > 0 (>= 0): knobs that cost nothing however large (a huge learning rate
#: diverges, which the trial reports); the trainer's own check, made at submit.
_POSITIVE = Cap(0.0, math.inf, low_open=True, high_open=True)
_NON_NEGATIVE = Cap(0.0, math.inf, high_open=True)

#: ``section.knob`` -> its cap, whatever the family.
KNOB_CAPS: dict[str, Cap] = {
    "optim.lr": _POSITIVE,
    "optim.momentum": _SHARE,
    "optim.beta1": _SHARE,
    "optim.beta2": _SHARE,
    "optim.eps": _POSITIVE,
    "optim.weight_decay": _NON_NEGATIVE,
    "model.width": Cap(1, 16384),
    "model.depth": Cap(1, 64),
    "model.embedding_dim": Cap(1, 1024),
    "model.dropout": _SHARE,
    "model.dropconnect": _SHARE,
    "model.stochastic_depth": _SHARE,
    "model.drop_rate": _SHARE,
    "model.drop_path_rate": _SHARE,
    "loss.label_smoothing": _SHARE,
    "loss.activation_reg": _NON_NEGATIVE,
    "train.batch_size": Cap(1, 65536),
    "train.grad_accum": Cap(1, 1024),
    "train.grad_clip": _NON_NEGATIVE,
    "train.ema_decay": _SHARE,
    "pretrain.dae_epochs": Cap(0, 1000),
    "pretrain.noise": _SHARE,
    "transfer.freeze_epochs": Cap(0, 100_000),
    "input.image_size": Cap(16, 2048),
    "input.n_mels": Cap(16, 128),
    "aug.cutout": Cap(0.0, 1.0),
    "aug.mixup_alpha": _POSITIVE,
    "aug.cutmix_alpha": _POSITIVE,
    "aug.time_warp": Cap(0, 1000),
    "aug.time_mask": Cap(0, 10_000),
    "aug.freq_mask": Cap(0, 128),
}

#: Caps of one family that differ from :data:`KNOB_CAPS` (the same name means another thing).
FAMILY_CAPS: dict[str, dict[str, Cap]] = {
    "audio_classification": {"model.width": Cap(1, 1024), "model.depth": Cap(1, 16)},
}


def cap_for(knob: str, family: str | None = None) -> Cap | None:
    """The cap of ``knob`` in ``family`` (the family's own first), or ``None`` if it has none."""
    return FAMILY_CAPS.get(family or "", {}).get(knob) or KNOB_CAPS.get(knob)


def check_cap(knob: str, value: object, family: str | None = None) -> None:
    """``ValueError`` naming the knob, the value and the range when a number is past its cap.

    Values that are not numbers (names, booleans) and knobs without a cap pass: their type
    and their choices are checked elsewhere.
    """
    cap = cap_for(knob, family)
    if cap is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if not cap.allows(value):
        shown = repr(value) if abs(value) < 10**40 else "a number of more than 40 digits"
        where = f" for {family}" if knob in FAMILY_CAPS.get(family or "", {}) else ""
        raise ValueError(
            f"`{knob}` = {shown} is past its cap: it must be {cap.describe()}{where}; pick a "
            "value within it (hpsearch.train.core.caps says why each bound)"
        )
