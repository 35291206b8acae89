"""The knobs each task family's trainer realizes, with their types: torch-free.

Built from the trainers' own config classes (:mod:`hpsearch.train.core.config`,
:mod:`~hpsearch.train.image.config`, :mod:`~hpsearch.train.audio.config`), which are the lists
their ``parse_*_config`` functions accept, so the service can refuse at submit what a worker
would refuse at its first trial (an unknown knob, a string for a number) without importing the
trainer's torch side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from types import MappingProxyType

from hpsearch.train.audio.config import _NOT_AUDIO, AudioConfig
from hpsearch.train.core.config import RegressionConfig, TrainConfig
from hpsearch.train.image.config import _NOT_IMAGE, ImageConfig

__all__ = ["CPU_DEFAULTS", "FAMILY_KNOBS", "knob_kinds"]

#: Task family -> the values that replace its space's defaults when a default config trains on
#: a CPU (``hpsearch try`` without ``--random``). The bundled image space's defaults suit a GPU
#: (resnet18 at 224 px: minutes an epoch on a CPU); these train the bundled digits in seconds.
#: A study's configs are never changed: its search still goes over the whole space.
CPU_DEFAULTS: Mapping[str, Mapping[str, object]] = MappingProxyType(
    {"image_classification": MappingProxyType({"model.name": "resnet10t", "input.image_size": 32})}
)


def knob_kinds(config_cls: type, *, exclude: Collection[str] = ()) -> dict[str, str]:
    """Every knob of ``config_cls``, ``section.knob`` -> its kind (``int``, ``float``, ``bool``,
    ``str``, or ``X | None``), less those in ``exclude``."""
    default = config_cls()
    return {
        f"{section.name}.{f.name}": str(f.type)
        for section in dataclasses.fields(config_cls)
        for f in dataclasses.fields(getattr(default, section.name))
        if f"{section.name}.{f.name}" not in exclude
    }


#: Task family -> the knobs its trainer reads (``section.knob`` -> kind). The same sets as the
#: trainers' ``DEFAULTS`` dicts (``hpsearch.train.DEFAULTS`` and the family ones).
FAMILY_KNOBS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "tabular_classification": knob_kinds(TrainConfig),
        "tabular_regression": knob_kinds(RegressionConfig, exclude=("train.balanced_sampler",)),
        "image_classification": knob_kinds(ImageConfig, exclude=_NOT_IMAGE),
        "audio_classification": knob_kinds(AudioConfig, exclude=_NOT_AUDIO),
    }
)
