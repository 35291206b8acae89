"""What a study may ask of workers: the trainer's knobs, their types and hard caps, at submit.

:func:`check_space_knobs` holds a resolved space (and the study's ``fixed`` values) against the
knobs the family's trainer realizes (:data:`hpsearch.train.core.family_knobs.FAMILY_KNOBS`) and their
caps (:mod:`hpsearch.train.core.caps`), so that a worker never receives a trial it must refuse: an
unknown knob, a string where the trainer needs a number, a float range on an int knob, or a
number past its cap (``model.width: 1e9``). Torch-free: the service calls it.

The caps of the spec itself (:data:`MAX_BUDGET_SECONDS`, :data:`MAX_BUDGET_TRIALS`,
:data:`MAX_FAILURES`, :data:`MAX_SEED`) bound the fields of :class:`hpsearch.studies.StudySpec`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from hpsearch.errors import SpecError
from hpsearch.spaces import Param, SearchSpace
from hpsearch.train.core.caps import check_cap
from hpsearch.train.core.family_knobs import FAMILY_KNOBS
from hpsearch.train.core.knobs import coerce

__all__ = [
    "MAX_BUDGET_SECONDS",
    "MAX_BUDGET_TRIALS",
    "MAX_FAILURES",
    "MAX_SEED",
    "check_space_knobs",
]

#: A study's wall-clock budget: at most 30 days.
MAX_BUDGET_SECONDS = 30 * 24 * 3600
#: A study's trial budget.
MAX_BUDGET_TRIALS = 1_000_000
#: Failed trials a study may tolerate before it stops.
MAX_FAILURES = 100_000
#: The largest seed: numpy takes seeds below 2**32; a trial trains with ``seed + number``,
#: which torch and Python's random take up to 2**64 - 1, far above any trial number.
MAX_SEED = 2**32 - 1

#: A knob's kind (its config field's type) -> the space parameter types that can realize it.
_PARAM_TYPES = {
    "int": ("int", "categorical"),
    "int | None": ("int", "categorical"),
    "float": ("float", "int", "categorical"),
    "float | None": ("float", "int", "categorical"),
}


def check_space_knobs(
    space: SearchSpace, family: str, fixed: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`SpecError` unless every parameter of ``space`` is a knob of ``family``'s
    trainer whose every value (bounds, default, choices, and the ``fixed`` one) the trainer
    takes and lies within the knob's hard cap.

    The message is one line naming the parameter, the value and what is allowed.
    """
    knobs = FAMILY_KNOBS.get(family)
    if knobs is None:
        return  # an unknown family is refused by the caller, with the known ones listed
    for name, param in space.params.items():
        if name not in knobs:
            raise SpecError(f"space {space.name!r}: {_unknown(name, family, knobs)}")
        kind = knobs[name]
        allowed = _PARAM_TYPES.get(kind, ("categorical",))
        if param.type not in allowed:
            raise SpecError(
                f"space {space.name!r}, parameter {name!r}: the {family} trainer takes a "
                f"{kind.removesuffix(' | None')} here, so the parameter must be of type "
                f"{' or '.join(allowed)}, not {param.type}"
            )
        for what, value in _values(param):
            _check_value(f"space {space.name!r}, parameter {name!r} ({what})", name, value,
                         kind, family)  # fmt: skip
    for name, value in (fixed or {}).items():
        if name in knobs:
            _check_value(f"fixed {name!r}", name, value, knobs[name], family)


def _values(param: Param) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]]
    if param.type == "categorical":
        out = [("choices", choice) for choice in param.choices or []]
    else:
        out = [("low", param.low), ("high", param.high)]
    return [*out, ("default", param.default)]


def _check_value(where: str, name: str, value: Any, kind: str, family: str) -> None:
    try:
        check_cap(name, coerce(name, value, kind), family)
    except ValueError as e:
        raise SpecError(f"{where}: {e}") from None


def _unknown(name: str, family: str, knobs: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(name, list(knobs), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"its knobs: {', '.join(sorted(knobs))}"
    return (
        f"parameter {name!r} is not a knob of the {family} trainer, which would refuse it; "
        f"{hint} (a space for your own `hpsearch worker --objective` function says "
        "`task: custom`)"
    )
