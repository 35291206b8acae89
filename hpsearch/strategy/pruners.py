"""Build the Optuna pruner a study spec names; epochs are the resource every pruner sees."""

from __future__ import annotations

from typing import Any, NamedTuple

import optuna

__all__ = ["PRUNERS", "make_pruner"]


class _Pruner(NamedTuple):
    cls: type[optuna.pruners.BasePruner]
    summary: str


_TABLE: dict[str, _Pruner] = {
    "none": _Pruner(optuna.pruners.NopPruner, "never prune"),
    "median": _Pruner(
        optuna.pruners.MedianPruner,
        "prune a trial worse than the median of earlier trials at the same epoch",
    ),
    "percentile": _Pruner(
        optuna.pruners.PercentilePruner, "like median, at another `percentile` (default 25)"
    ),
    "asha": _Pruner(
        optuna.pruners.SuccessiveHalvingPruner,
        "asynchronous successive halving (`reduction_factor`, `min_resource`)",
    ),
    "hyperband": _Pruner(
        optuna.pruners.HyperbandPruner, "Hyperband over epochs (`reduction_factor`, `min_resource`)"
    ),
    "wilcoxon": _Pruner(
        optuna.pruners.WilcoxonPruner,
        "Wilcoxon signed-rank test against the best trial (`p_threshold`); made for objectives "
        "whose steps are evaluation instances, not epochs of a learning curve",
    ),
}

#: Pruner names a study spec may give, with what each does.
PRUNERS: dict[str, str] = {name: entry.summary for name, entry in _TABLE.items()}


def _defaults(name: str, epochs: int) -> dict[str, Any]:
    warmup = max(1, epochs // 5)  # a few epochs before judging: early curves cross often
    return {
        "median": {"n_startup_trials": 5, "n_warmup_steps": warmup},
        "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": warmup},
        "asha": {"min_resource": 1, "reduction_factor": 3},
        "hyperband": {"min_resource": 1, "max_resource": epochs, "reduction_factor": 3},
        "wilcoxon": {"p_threshold": 0.1},
    }.get(name, {})


def make_pruner(name: str, *, epochs: int, **kwargs: Any) -> optuna.pruners.BasePruner:
    """The pruner ``name`` with hpsearch's defaults for an ``epochs``-long trial, then ``kwargs``.

    Raises ``ValueError`` naming the pruner and the argument when ``kwargs`` does not fit it.
    """
    if name not in _TABLE:
        raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(_TABLE)}")
    try:
        return _TABLE[name].cls(**{**_defaults(name, epochs), **kwargs})
    except TypeError as e:
        raise ValueError(f"pruner {name!r} does not take {sorted(kwargs)}: {e}") from e
