"""Objectives for the fail-fast and fix-and-continue tests (``--objective fix_objectives:NAME``)."""

from __future__ import annotations

import math

_calls = {"diverges_first": 0}


def needs_a_missing_module(config: dict, report) -> float:
    """Imports, at call time, a module that is not installed: every trial fails the same way."""
    import hpsearch_no_such_module  # noqa: F401

    return 0.0


def diverges_first(config: dict, report) -> float:
    """NaN on its first call in this process (a config that diverged), then a value."""
    _calls["diverges_first"] += 1
    if _calls["diverges_first"] == 1:
        return math.nan
    report(float(config["optim.lr"]), 1)
    return float(config["optim.lr"])
