"""Objectives that take no time, for tests where a worker should spend its time claiming trials
(``--objective instant_objectives:NAME``)."""

from __future__ import annotations


def instant(config: dict, report) -> float:
    """Returns at once, reporting nothing: a worker running it mostly claims and tells trials."""
    return float(config["optim.lr"])
