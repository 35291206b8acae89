"""What a worker runs for one trial: the built-in trainer, or the user's own function."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from hpsearch.errors import UsageError
from hpsearch.studies import StudySpec

__all__ = ["Objective", "Report", "load_objective", "builtin_objective"]

#: ``report(value, step)``: records the metric after a step (an epoch); may raise TrialPruned.
Report = Callable[[float, int], None]
#: ``objective(config, report) -> metric``.
Objective = Callable[[dict[str, Any], Report], float]


def load_objective(ref: str) -> Objective:
    """Import ``package.module:function``; raises :class:`UsageError` saying what is wrong."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--objective must look like package.module:function, got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import {module_name!r} for --objective {ref!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"{module_name!r} has no function {attr!r} (from --objective {ref!r})")
    return fn


def builtin_objective(spec: StudySpec, *, seed: int | None, device: str | None) -> Objective:
    """The trainer of the spec's task, with the trial's seed and this worker's device."""
    from hpsearch.train import train  # torch is imported only by processes that train

    def objective(config: dict[str, Any], report: Report) -> float:
        return train(config, spec.task, report, metric=spec.metric, seed=seed, device=device)

    return objective
