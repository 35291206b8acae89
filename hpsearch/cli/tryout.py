"""Trying configs outside any study: one given config, or a few random ones from a space.

This is what ``hpsearch try`` runs, the way a user checks that a space and their data train
before launching a study. Nothing is stored: results come back as :class:`TryResult`, and the
caller can watch every epoch through ``on_epoch``. torch is imported only when training starts.
"""

from __future__ import annotations

import csv
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from hpsearch.cli.output import Column, render_table
from hpsearch.errors import HpsearchError, SpaceError, UsageError
from hpsearch.spaces import SearchSpace, default_config, suggest_config
from hpsearch.families import METRICS, TaskSpec
from hpsearch.yaml_input import load_user_yaml

if TYPE_CHECKING:
    from hpsearch.train.core.loop import EpochResult

__all__ = [
    "TryResult",
    "best_result",
    "check_assignments",
    "configs_to_try",
    "default_dataset",
    "describe_target",
    "device_defaults",
    "epoch_header",
    "format_config_line",
    "format_epoch",
    "format_summary",
    "make_task",
    "parse_assignments",
    "pin_pretrained",
    "trainer_for",
    "try_configs",
]

#: The bundled dataset each task family trains on when no dataset is given.
_DEFAULT_DATASETS = {
    "tabular_classification": "digits",
    "tabular_regression": "diabetes",
    "audio_classification": "tones",
}


@dataclass(frozen=True)
class TryResult:
    """How one tried config went: every epoch it finished, and why it failed if it did."""

    number: int  # counting from 1, in the order the configs were tried
    config: dict[str, Any]
    metric: str  # the metric `final` reads, e.g. val_accuracy
    epochs: tuple[EpochResult, ...]  # the epochs that finished (all of them unless it failed)
    seconds: float  # wall time, data loading included
    error: str | None = None  # "ErrorType: message" when the config failed

    @property
    def failed(self) -> bool:
        """Whether training stopped on an error."""
        return self.error is not None

    @property
    def final(self) -> float | None:
        """The last finished epoch's metric, or None when the config failed or ran no epoch."""
        if self.failed or not self.epochs:
            return None
        return self.epochs[-1].metrics[self.metric]


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["optim.lr=0.01", "optim.name=sgd"]`` -> ``{"optim.lr": 0.01, "optim.name": "sgd"}``.

    Values are read as YAML scalars (``64`` is an int, ``true`` a bool, ``1e-3`` stays a numeric
    string that :meth:`SearchSpace.check_fixed` reads as a float). Raises :class:`UsageError`
    for an item without ``=``, an empty key, a key given twice, or a value that is not a scalar.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set takes key=value (e.g. optim.lr=0.01), got {item!r}")
        if key in out:
            raise UsageError(f"--set {key} is given twice; keep one")
        try:
            value = load_user_yaml(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise UsageError(f"--set {key}: cannot read {text!r} as a value: {e}") from None
        if isinstance(value, (dict, list)):
            raise UsageError(f"--set {key}: takes one value (a number, word or bool), got {text!r}")
        out[key] = value
    return out


def check_assignments(space: SearchSpace, assignments: Mapping[str, Any]) -> dict[str, Any]:
    """``assignments`` checked against ``space`` and normalized (``"1e-3"`` -> ``0.001``).

    Raises :class:`UsageError` naming the key and saying what the space allows.
    """
    try:
        return space.check_fixed(assignments)
    except SpaceError as e:
        raise UsageError(f"--set: {str(e).removeprefix('fixed: ')}") from None


def default_dataset(family: str) -> str:
    """The bundled dataset that ``family`` trains on when none is named (``digits``, ``tones``)."""
    return _DEFAULT_DATASETS.get(family, "digits")


def make_task(
    space: SearchSpace,
    *,
    dataset: str | None = None,
    epochs: int = 20,
    pretrained_weights: str | None = None,
    target: str | None = None,
) -> TaskSpec:
    """The task of ``space``'s family on ``dataset`` (default :func:`default_dataset`), with
    ``target`` the label column of a CSV or Parquet file.

    Raises :class:`UsageError` for a value :class:`TaskSpec` refuses (``epochs < 1``).
    """
    try:
        return TaskSpec(
            family=space.task,
            dataset=dataset or default_dataset(space.task),
            epochs=epochs,
            pretrained_weights=pretrained_weights,
            target=target,
        )
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
        )
        raise UsageError(f"task: {problems}") from None


def configs_to_try(
    space: SearchSpace,
    *,
    fixed: Mapping[str, Any] | None = None,
    n_random: int = 0,
    seed: int | None = 0,
    defaults: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The configs ``hpsearch try`` trains.

    With ``n_random=0``: one config, the space's defaults (``defaults`` in place of some, such
    as :func:`device_defaults`) with ``fixed`` values. Otherwise
    ``n_random`` configs drawn by Optuna's ``RandomSampler(seed)`` through an in-memory study
    (nothing is stored), the ``fixed`` parameters pinned. ``fixed`` is checked with
    :meth:`SearchSpace.check_fixed` (raises :class:`~hpsearch.errors.SpaceError`).
    """
    if n_random < 0:
        raise UsageError(f"--random must be >= 0, got {n_random}")
    pinned = space.check_fixed(fixed or {})
    if n_random == 0:
        return [default_config(space, {**space.check_fixed(defaults or {}), **pinned})]
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n_random):
        trial = study.ask()
        configs.append(suggest_config(trial, space, pinned))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # closes the trial; no value
    return configs


def pin_pretrained(
    space: SearchSpace, fixed: Mapping[str, Any], pretrained_weights: str | None
) -> tuple[dict[str, Any], str | None]:
    """``fixed`` with ``transfer.pretrained`` pinned to false when the space searches it and no
    weights are given, and the notice to print (None when nothing was pinned).

    Raises :class:`UsageError` when ``fixed`` pins it to true without weights: the same rule as
    a study's (``hpsearch submit`` refuses such a spec).
    """
    knob = "transfer.pretrained"
    if knob not in space.params or pretrained_weights is not None:
        return dict(fixed), None
    if knob in fixed:
        if fixed[knob] is True:
            raise UsageError(
                f"--set {knob}=true needs pretrained weights: give --pretrained-weights FILE "
                "(a weights file, or 'hub' for timm's published weights, which needs network)"
            )
        return dict(fixed), None
    notice = (
        f"note: {knob} is pinned to false: no --pretrained-weights given (give a weights "
        "file, or 'hub', to try pretrained backbones too)"
    )
    return {**fixed, knob: False}, notice


def device_defaults(
    space: SearchSpace, fixed: Mapping[str, Any], device: str | None
) -> tuple[dict[str, Any], str | None]:
    """The values that replace ``space``'s defaults on ``device`` (None: CUDA if present), and
    the notice to print; empty on CUDA.

    The bundled spaces' defaults suit a GPU (an image backbone at 224 px); on a CPU a default
    config should train in seconds (:data:`hpsearch.train.core.family_knobs.CPU_DEFAULTS`). Only
    parameters of the space that ``fixed`` leaves free are replaced. Imports torch.
    """
    from hpsearch.train.core.family_knobs import CPU_DEFAULTS

    table = CPU_DEFAULTS.get(space.task, {})
    if not table:
        return {}, None
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not device.startswith("cpu"):
        return {}, None
    values = {
        k: v
        for k, v in table.items()
        if k in space.params and k not in fixed and _takes(space, k, v)
    }
    if not values:
        return {}, None
    shown = " ".join(f"{k}={v}" for k, v in values.items())
    was = " ".join(f"{k}={space.params[k].default}" for k in values)
    notice = (
        f"note: on a CPU the defaults are {shown} (the space's, {was}, suit a GPU); "
        "--set them to change"
    )
    return values, notice


#: Rows of a CSV that :func:`describe_target` reads to judge its columns.
_SNIFF_ROWS = 2000


def describe_target(task: TaskSpec) -> list[str]:
    """What ``hpsearch try`` and ``lr-find`` say about the label column of a CSV ``task``
    without ``target``: which column is used, and a warning when the first column looks like
    labels and the last one like a feature. Empty for a bundled dataset, a folder, a Parquet
    file or a given target.

    Reads the file's header and first rows here, on your machine, so the lines may name its
    columns (a worker's messages never do).
    """
    path = task.dataset
    if task.target is not None or not path.lower().endswith(".csv") or not os.path.isfile(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = [row for _, row in zip(range(_SNIFF_ROWS), reader, strict=False)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # the trainer says what is wrong with the file
    if len(header) < 2:
        return []
    if "target" in header:
        return ["label column: 'target' (the column named target; --target NAME to pick another)"]
    last, first = header[-1], header[0]
    lines = [f"label column: {last!r}, the last column (--target NAME to pick another)"]
    if task.family != "tabular_classification":
        return lines

    def column(i: int) -> list[str]:
        return [row[i].strip() for row in rows if len(row) > i and row[i].strip()]

    first_values, last_values = column(0), column(len(header) - 1)
    if _label_name(last) or not _looks_like_labels(first_values):
        return lines
    n_first, n_last = len(set(first_values)), len(set(last_values))
    numeric_last = bool(last_values) and all(_is_float(v) for v in last_values)
    fractional = numeric_last and any(not float(v).is_integer() for v in set(last_values))
    # A feature such as a pixel is mostly one value; a label column rarely is.
    skewed = _top_share(last_values) > 0.5 and _top_share(first_values) <= 0.5
    if _label_name(first) or (numeric_last and (fractional or n_last > n_first or skewed)):
        if fractional:
            why = "holds fractional numbers"
        elif skewed:
            why = f"is {_top_share(last_values):.0%} one value"
        else:
            why = f"has {n_last} distinct values"
        lines.append(
            f"warning: the first column {first!r} looks like the labels ({n_first} distinct "
            f"values) and the last one {last!r} like a feature (it {why}): if {first!r} is "
            f"the label, pass --target {first}"
        )
    return lines


_LABEL_NAMES = re.compile(
    r"^(label|labels|class|classes|target|y|category|species|outcome)$", re.IGNORECASE
)


def _top_share(values: Sequence[str]) -> float:
    if not values:
        return 0.0
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts.values()) / len(values)


def _label_name(name: str) -> bool:
    return bool(_LABEL_NAMES.match(name.strip()))


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _looks_like_labels(values: Sequence[str]) -> bool:
    distinct = set(values)
    return 2 <= len(distinct) <= max(2, min(50, len(values) // 5)) and not all(
        _is_float(v) and not float(v).is_integer() for v in distinct
    )


def _takes(space: SearchSpace, name: str, value: Any) -> bool:
    try:
        space.params[name].check_value(value)
    except SpaceError:
        return False
    return True


def trainer_for(family: str | None) -> Callable[..., Iterator[EpochResult]]:
    """The ``fit`` of ``family`` (:func:`hpsearch.train.fitter`); :class:`UsageError` for a
    family that has no trainer yet. Imports torch."""
    from hpsearch.train import fitter

    try:
        return fitter(family)
    except ValueError as e:
        raise UsageError(f"{e}; `hpsearch try` needs a trainer for the space's family") from None


def try_configs(
    configs: Sequence[Mapping[str, Any]],
    task: TaskSpec,
    *,
    metric: str = "val_accuracy",
    seed: int | None = 0,
    device: str | None = None,
    on_start: Callable[[int, dict[str, Any]], None] | None = None,
    on_epoch: Callable[[int, EpochResult], None] | None = None,
) -> list[TryResult]:
    """Train each config on ``task`` in turn and return one :class:`TryResult` per config.

    ``task.family`` picks the trainer (:func:`hpsearch.train.fitter`); a family without
    one raises :class:`UsageError` before anything trains. Every config trains with the same
    ``seed``, so the configs differ only by their values. A config that fails (a diverging
    loss, a knob value the trainer refuses, a torch runtime error such as running out of
    memory) is recorded with its reason and the next one runs. ``on_start(number, config)``
    and ``on_epoch(number, epoch_result)`` are called as training goes, numbers from 1.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}: the trainer reports {sorted(METRICS)}")
    fit = trainer_for(task.family)

    results = []
    for number, config in enumerate(configs, start=1):
        config = dict(config)
        if on_start is not None:
            on_start(number, config)
        epochs: list[EpochResult] = []
        error = None
        started = time.perf_counter()
        try:
            for result in fit(config, task, seed=seed, device=device):
                epochs.append(result)
                if on_epoch is not None:
                    on_epoch(number, result)
        except (HpsearchError, ValueError, ArithmeticError, RuntimeError) as e:
            # RuntimeError covers torch's own failures (shape mismatches, CUDA out of memory):
            # they end this config, not the whole try.
            error = f"{type(e).__name__}: {e}"
        results.append(
            TryResult(
                number=number,
                config=config,
                metric=metric,
                epochs=tuple(epochs),
                seconds=time.perf_counter() - started,
                error=error,
            )
        )
    return results


def best_result(results: Sequence[TryResult]) -> TryResult | None:
    """The result with the best final metric (its direction from METRICS), None if all failed."""
    done = [r for r in results if r.final is not None and math.isfinite(r.final)]
    if not done:
        return None
    sign = 1.0 if METRICS[done[0].metric] == "maximize" else -1.0
    return max(done, key=lambda r: sign * r.final)  # type: ignore[operator]


def epoch_header(metric: str) -> str:
    """The header of the per-epoch lines :func:`format_epoch` writes for ``metric``."""
    return f"{'config':>6} {'epoch':>5} {'train_loss':>10} {metric:>12} {'val_loss':>9} {'lr':>9}"


def _num(value: float, width: int) -> str:
    # Fixed point while it fits; a diverging loss of 1e21 would push the columns apart.
    text = f"{value:.4f}"
    return f"{text:>{width}}" if len(text) <= width else f"{value:>{width}.2e}"


def format_epoch(number: int, result: EpochResult, metric: str) -> str:
    """One line per epoch, aligned under :func:`epoch_header`."""
    m = result.metrics
    return (
        f"{number:>6} {result.epoch:>5} {_num(result.train_loss, 10)} "
        f"{_num(m[metric], 12)} {_num(m['val_loss'], 9)} {result.lr:>9.2e}"
    )


def format_config_line(number: int, config: Mapping[str, Any]) -> str:
    """``config 2: optim.lr=0.0123 sched.name=cosine ...`` (floats to 4 significant digits)."""

    def show(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return f"config {number}: " + " ".join(f"{k}={show(v)}" for k, v in config.items())


def format_summary(results: Sequence[TryResult]) -> list[str]:
    """The summary table: config number, final metric, seconds, and the reason of a failure.

    The best config is marked with ``*``.
    """
    if not results:
        return []
    metric = results[0].metric
    best = best_result(results)
    columns = [
        Column(title="config", align=">", width=6),
        Column(title=metric, align=">", width=12),
        Column(title="seconds", align=">", width=7),
        Column(title="failed"),
    ]
    rows = [
        (
            f"{r.number}{'*' if r is best else ' '}",
            "-" if r.final is None else f"{r.final:.4f}",
            f"{r.seconds:.1f}",
            r.error or "",
        )
        for r in results
    ]
    return render_table(columns, rows)
