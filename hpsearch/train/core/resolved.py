"""A trial's config as the trainer ran it: every knob of its family, defaults filled in.

A trial's stored config names only the parameters its space searched or pinned; the trainer
fills the rest with its defaults (:mod:`hpsearch.train.core.config`). ``hpsearch export``
writes the full set, which is what the trainer used, so that the exported ``config.json`` says
everything about the run. Torch-free, like the config modules it reads: the service exports
too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hpsearch.train.audio.config import parse_audio_config
from hpsearch.train.core.config import parse_config, parse_regression_config
from hpsearch.train.core.family_knobs import FAMILY_KNOBS
from hpsearch.train.image.config import parse_image_config

__all__ = ["resolved_config"]

_PARSERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "tabular_classification": parse_config,
    "tabular_regression": parse_regression_config,
    "image_classification": parse_image_config,
    "audio_classification": parse_audio_config,
}


def resolved_config(config: Mapping[str, Any], family: str | None) -> dict[str, Any]:
    """Every knob the trainer of ``family`` (tabular when None) reads, ``section.knob`` ->
    the value it trained with: ``config``'s, else the trainer's default.

    Training with the result trains exactly as training with ``config``. Raises
    ``ValueError`` for a family without a trainer, an unknown key or a bad value.
    """
    family = family or "tabular_classification"
    parse = _PARSERS.get(family)
    if parse is None:
        raise ValueError(f"no trainer for task family {family!r}; trained: {', '.join(_PARSERS)}")
    parsed = parse(config)
    out: dict[str, Any] = {}
    for key in FAMILY_KNOBS[family]:
        section, _, knob = key.partition(".")
        out[key] = getattr(getattr(parsed, section), knob)
    return out
