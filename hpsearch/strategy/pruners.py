"""Build the Optuna pruner a study spec names; epochs are the resource every pruner sees."""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import optuna

from hpsearch.strategy.pareto_pruner import ParetoRungPruner

__all__ = ["MAX_PRUNER_INT", "PRUNERS", "make_pruner"]

#: The largest integer a pruner argument may be (steps, trials, resources, patience): the
#: database's int32, far past any epoch count, and a bound that keeps a 400-digit number out of
#: the stored spec.
MAX_PRUNER_INT = 2**31 - 1


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
    "pareto": _Pruner(
        ParetoRungPruner,
        "for several objectives: at each rung, stop a trial outside the top "
        "1/`reduction_factor` by non-dominated sorting (as MOASHA; `min_resource`)",
    ),
    "patient": _Pruner(
        optuna.pruners.PatientPruner,
        "prune after `patience` epochs without improvement (`min_delta`), then ask the pruner "
        "it `wraps` (e.g. {name: median}); with no `wraps`, patience alone decides",
    ),
}

#: Pruner names a study spec may give, with what each does.
PRUNERS: dict[str, str] = {name: entry.summary for name, entry in _TABLE.items()}


def _defaults(name: str, epochs: int) -> dict[str, Any]:
    warmup = max(1, epochs // 5)  # a few epochs before judging: early curves cross often
    table: dict[str, dict[str, Any]] = {
        "median": {"n_startup_trials": 5, "n_warmup_steps": warmup},
        "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": warmup},
        "asha": {"min_resource": 1, "reduction_factor": 3},
        "pareto": {"min_resource": 1, "reduction_factor": 3},
        "hyperband": {"min_resource": 1, "max_resource": epochs, "reduction_factor": 3},
        "wilcoxon": {"p_threshold": 0.1},
        "patient": {"patience": max(2, epochs // 5)},
    }
    return table.get(name, {})


def _wrapped(wraps: Any, *, epochs: int) -> optuna.pruners.BasePruner | None:
    # The pruner a patient pruner asks once patience holds: a name, or {name:, args:} (or the
    # {name:, key: value} shorthand of a spec's pruner).
    if wraps is None:
        return None
    if isinstance(wraps, str):
        wraps = {"name": wraps}
    if not isinstance(wraps, dict) or not isinstance(wraps.get("name"), str):
        raise ValueError(  # noqa: TRY004 - make_pruner reports every bad argument so
            f"pruner 'patient': `wraps` must be a pruner name or {{name: ..., args: {{...}}}}, "
            f"got {wraps!r}"
        )
    args = {k: v for k, v in wraps.items() if k not in ("name", "args")}
    args.update(wraps.get("args") or {})
    try:
        return make_pruner(wraps["name"], epochs=epochs, **args)
    except ValueError as e:
        raise ValueError(f"pruner 'patient': wraps: {e}") from e


def _check_hyperband(kwargs: dict[str, Any]) -> None:
    # HyperbandPruner checks these only when it first prunes, inside a worker's trial: too late.
    factor, low, high = (
        kwargs.get(k) for k in ("reduction_factor", "min_resource", "max_resource")
    )
    if isinstance(factor, (int, float)) and factor < 2:
        raise ValueError(f"pruner 'hyperband': `reduction_factor` must be >= 2, got {factor!r}")
    if isinstance(high, (int, float)) and isinstance(low, (int, float)) and high < max(low, 1):
        raise ValueError(
            f"pruner 'hyperband': `max_resource` must be >= `min_resource` (and >= 1), got "
            f"max_resource={high!r}, min_resource={low!r}"
        )


def _check_bounds(name: str, kwargs: dict[str, Any]) -> None:
    # Optuna checks little of this itself, and only when a trial is pruned: too late.
    for key, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # names ("auto"), `wraps` (checked as a pruner of its own), None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"pruner {name!r}: `{key}` must be a finite number, got {value!r}")
        if abs(value) > MAX_PRUNER_INT:
            shown = repr(value) if abs(value) < 10**40 else "a number of more than 40 digits"
            raise ValueError(
                f"pruner {name!r}: `{key}` = {shown} is out of range; pruner arguments lie "
                f"within +-{MAX_PRUNER_INT} (2**31 - 1)"
            )


def make_pruner(name: str, *, epochs: int, **kwargs: Any) -> optuna.pruners.BasePruner:
    """The pruner ``name`` with hpsearch's defaults for an ``epochs``-long trial, then ``kwargs``.

    Raises ``ValueError`` naming the pruner and the argument when ``kwargs`` does not fit it.
    """
    if name not in _TABLE:
        raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(_TABLE)}")
    given = sorted(kwargs)
    _check_bounds(name, kwargs)
    kwargs = {**_defaults(name, epochs), **kwargs}
    if name == "hyperband":
        _check_hyperband(kwargs)
    if name == "patient":
        kwargs["wrapped_pruner"] = _wrapped(kwargs.pop("wraps", None), epochs=epochs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _TABLE[name].cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"pruner {name!r} does not take {given}: {e}") from e
    except ValueError as e:  # Optuna's own checks ("patience cannot be negative ...")
        raise ValueError(f"pruner {name!r}: {e}") from e
