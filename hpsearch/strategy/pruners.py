"""Build the Optuna pruner a study spec names; epochs are the resource every pruner sees."""

from __future__ import annotations

from typing import Any

import optuna

__all__ = ["PRUNERS", "make_pruner"]

#: Pruner names a study spec may give, with what each does.
PRUNERS: dict[str, str] = {
    "none": "never prune",
    "median": "prune a trial whose metric is worse than the median of earlier trials at that epoch",
    "percentile": "like median, at another percentile (`percentile`, default 25)",
    "asha": "asynchronous successive halving (`reduction_factor`, `min_resource`)",
    "hyperband": "Hyperband over epochs (`reduction_factor`, `min_resource`)",
    "wilcoxon": "Wilcoxon signed-rank test against the best trial (`p_threshold`)",
}


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
    classes: dict[str, type[optuna.pruners.BasePruner]] = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "asha": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "wilcoxon": optuna.pruners.WilcoxonPruner,
    }
    if name not in classes:
        raise ValueError(f"unknown pruner {name!r}; choose one of {sorted(classes)}")
    try:
        return classes[name](**{**_defaults(name, epochs), **kwargs})
    except TypeError as e:
        raise ValueError(f"pruner {name!r} does not take {sorted(kwargs)}: {e}") from e
