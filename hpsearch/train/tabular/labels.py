"""Whether a classification label column holds a continuous number (a regression target).

A float feature taken as the label (the last column, by default) would otherwise become
hundreds of classes and fail the stratified split with a message listing every one of them.
Plain Python, no numpy or torch: ``hpsearch submit`` asks it too, on the first rows of a local
CSV (:func:`hpsearch.studies.checks.check_local_task`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

__all__ = ["MANY_CLASSES", "continuous_label", "continuous_label_error"]

#: More distinct values than this, with some value in a single row, reads as a measurement.
MANY_CLASSES = 20


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def continuous_label(values: Sequence[str], *, complete: bool = True) -> str | None:
    """Why the label ``values`` (one cell per row, stripped) look continuous, or ``None``.

    Continuous: every value is a number, and either some are not whole numbers (with more than
    :data:`MANY_CLASSES` distinct values, or some value in a single row), or they are whole
    numbers with more than :data:`MANY_CLASSES` distinct values and some value in a single row
    (every class needs two rows to be split). ``complete=False`` says ``values`` are the
    first rows only: then a value seen once may recur later, so only fractional numbers with
    many distinct values count. Returns the reason, e.g. ``"300 distinct values, not whole
    numbers"``.
    """
    numbers = [_number(v) for v in values]
    if not numbers or any(n is None for n in numbers):
        return None  # text labels (or empty cells) are classes
    counts = Counter(values)
    distinct = len(counts)
    single = sum(1 for c in counts.values() if c < 2)
    many = distinct > MANY_CLASSES
    fractional = any(not n.is_integer() for n in numbers if n is not None)
    if fractional and (many or (complete and single)):
        return f"{distinct} distinct values, not whole numbers"
    if complete and many and single:
        return f"{distinct} distinct whole numbers, {single} of them in one row only"
    return None


def continuous_label_error(label: str, why: str) -> str:
    """The one-line message for a label that :func:`continuous_label` judged continuous;
    ``label`` names it as the user gave it (``task.target 'f5'``, ``the last column``)."""
    return (
        f"{label} looks continuous ({why}): use the tabular_regression space (space: "
        "tabular_regression, or `hpsearch try tabular_regression`) or pick the label column "
        "with --target / task.target"
    )
