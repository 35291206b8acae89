"""Knob checking and parsing shared by every family's config.

A family's config is a frozen dataclass of sections (``optim``, ``model``, ``train``...), each a
frozen dataclass of knobs with defaults; a resolved search-space config names the knobs
``section.knob``. The checks raise ``ValueError`` naming the knob and the bad value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from hpsearch.train.core.caps import check_cap

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "check_at_least",
    "check_choice",
    "check_in_range",
    "check_positive",
    "coerce",
    "knob_defaults",
    "parse_sections",
]

_Config = TypeVar("_Config", bound="DataclassInstance")


def check_choice(key: str, value: Any, choices: Collection[Any]) -> None:
    """``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{key}` must be one of {list(choices)}, got {value!r}")


def check_in_range(
    key: str, value: float, low: float, high: float, *, high_open: bool = False
) -> None:
    """``ValueError`` unless ``low <= value <= high`` (``< high`` when ``high_open``)."""
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise ValueError(f"`{key}` must be in [{low}, {high}{bracket}, got {value!r}")


def check_positive(key: str, value: float) -> None:
    """``ValueError`` unless ``value > 0``."""
    if not value > 0:
        raise ValueError(f"`{key}` must be > 0, got {value!r}")


def check_at_least(key: str, value: float, low: float, *, note: str = "") -> None:
    """``ValueError`` when ``value < low``; ``note`` (such as ``"(0 = off)"``) follows the bound
    in the message."""
    if value < low:
        raise ValueError(f"`{key}` must be >= {low}{f' {note}' if note else ''}, got {value!r}")


def coerce(key: str, value: Any, kind: str) -> Any:
    """``value`` as a ``kind`` (``float``, ``int``, ``bool``, ``str``, or ``X | None``), the
    annotation of the knob's field; ``ValueError`` when it is not one."""
    optional = kind.endswith(" | None")
    if optional and value is None:
        return None
    kind = kind.removesuffix(" | None")
    # Optuna hands back Python scalars, YAML may give ints for floats; bools are ints in
    # Python, so they are refused explicitly where a number is expected.
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer of hundreds of digits
                raise ValueError(
                    f"`{key}` = an integer of {len(str(abs(value)))} digits is too large for a "
                    "float; write a number below 1.8e308"
                ) from None
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
    elif kind == "str" and isinstance(value, str):
        return value
    raise ValueError(f"`{key}` must be a {kind}, got {value!r} ({type(value).__name__})")


def knob_defaults(config_cls: type, *, exclude: Collection[str] = ()) -> dict[str, Any]:
    """Every knob of ``config_cls``, ``section.knob`` -> default, less those in ``exclude``."""
    default = config_cls()
    return {
        f"{section.name}.{f.name}": getattr(getattr(default, section.name), f.name)
        for section in dataclasses.fields(config_cls)
        for f in dataclasses.fields(getattr(default, section.name))
        if f"{section.name}.{f.name}" not in exclude
    }


def parse_sections(
    config_cls: type[_Config],
    config: Mapping[str, Any],
    *,
    known: Mapping[str, Any],
    trainer: str,
    family: str | None = None,
) -> _Config:
    """Build ``config_cls`` from a resolved config, every knob it lacks at its default.

    Raises ``ValueError`` for a key not in ``known`` (so a typo in a search space fails the
    first trial instead of being silently ignored), naming ``trainer`` (and ``family``), for a
    bad value, and for a number past its hard cap (:mod:`hpsearch.train.core.caps`).
    """
    unknown = sorted(set(config) - set(known))
    if unknown:
        where = f" for {family}" if family else ""
        raise ValueError(f"unknown config key(s) {unknown}{where}; {trainer} knows {sorted(known)}")
    default = config_cls()
    sections = {}
    for section in dataclasses.fields(config_cls):
        defaults = getattr(default, section.name)
        kwargs = {}
        for f in dataclasses.fields(defaults):
            key = f"{section.name}.{f.name}"
            if key in config:
                kwargs[f.name] = coerce(key, config[key], str(f.type))
                check_cap(key, kwargs[f.name], family)
        sections[section.name] = dataclasses.replace(defaults, **kwargs)
    return config_cls(**sections)
