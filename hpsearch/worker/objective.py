"""What a worker runs for one trial: the built-in trainer, or the user's own function."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hpsearch.data_roots import DataRoots, reading_under
from hpsearch.errors import UsageError
from hpsearch.studies import StudySpec

__all__ = [
    "KeepPredictions",
    "KeepWeights",
    "Objective",
    "Observe",
    "Report",
    "TrialFunction",
    "TrialResult",
    "bounded_traceback",
    "load_objective",
    "trial_function",
]

#: ``report(value, step)``: records the metric after a step (an epoch); may raise TrialPruned.
Report = Callable[[float, int], None]
#: A user's objective, ``objective(config, report) -> metric`` (optionally ``checkpoint=path``:
#: write it aside and rename it into place, since a worker's stop interrupts the objective at
#: once, mid-write too); a study of several objectives (or constraints) gets a dict of named
#: metrics instead.
Objective = Callable[..., "TrialResult"]
#: Gets the final model's validation predictions (a ``ValPredictions``) once, for reports.
KeepPredictions = Callable[[Any], None]
#: Gets the final model's weights once, as the bytes of a safetensors file, for ``hpsearch export``.
KeepWeights = Callable[[bytes], None]
#: Gets every metric the trainer knows as it learns them: its costs before the first epoch,
#: then each epoch's metrics; may raise (an :class:`~hpsearch.studies.objectives.Infeasible`).
Observe = Callable[[dict[str, float]], None]
#: What a trial returns: the metric, or (several objectives) a mapping of metric names.
TrialResult = float | Mapping[str, float]
#: What the worker calls: ``run(config, report, seed, checkpoint, keep, observe) -> result``;
#: ``checkpoint`` is the file a resumable trial saves to and resumes from, or None; ``keep``
#: gets the final model's validation predictions (the built-in trainer only), or is None;
#: ``observe`` sees the built-in trainer's metrics (a user's function returns its own);
#: ``keep_weights`` gets the final model's weights (the built-in trainer only), or is None.
TrialFunction = Callable[
    [
        dict[str, Any],
        Report,
        int,
        Path | None,
        KeepPredictions | None,
        Observe | None,
        KeepWeights | None,
    ],
    TrialResult,
]


def load_objective(ref: str) -> Objective:
    """Import ``package.module:function``; raises :class:`UsageError` saying what is wrong.

    The module is looked up in the current working directory first, as ``python -m`` does
    (no ``PYTHONPATH=.`` needed), then on ``sys.path``.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--objective must look like package.module:function, got {ref!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(
            f"cannot import {module_name!r} for --objective {ref!r} (looked in {cwd} and on "
            f"sys.path): {e}; run the worker from the module's folder, or install it"
        ) from e
    except Exception as e:  # the module's own code failed on import (a SyntaxError, a NameError)
        raise UsageError(
            f"importing {module_name!r} for --objective {ref!r} failed: {type(e).__name__}: {e}"
        ) from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"{module_name!r} has no function {attr!r} (from --objective {ref!r})")
    return fn


#: The most characters of a traceback kept with a failed trial (its end: the raising frames).
MAX_TRACEBACK_CHARS = 8000


def bounded_traceback(error: BaseException, *, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """``error``'s formatted traceback, cut to its last ``limit`` characters when longer
    (the first line and a note of the cut kept), for a trial's ``fail_traceback``."""
    text = "".join(traceback.format_exception(error)).rstrip()
    if len(text) <= limit:
        return text
    head = "Traceback (most recent call last):\n"
    note = f"  ... ({len(text) - limit} characters cut) ...\n"
    return head + note + text[len(text) - limit :]


def trial_function(
    spec: StudySpec,
    *,
    objective: Objective | None = None,
    device: str | None = None,
    data_roots: DataRoots | None = None,
) -> TrialFunction:
    """The function a worker runs for each trial of the study.

    The user's ``objective`` when given (it gets the config and ``report``, and the trial's
    checkpoint path as ``checkpoint=`` if it takes a parameter of that name), else the trainer
    of the spec's task, seeded per trial on this worker's device, resuming from the checkpoint
    when there is one. Imports the trainer (and torch) now, before any trial is claimed.

    The trainer reads only bundled datasets and files under ``data_roots`` (default: none,
    bundled datasets only): a path the task names outside them fails the trial with
    :class:`~hpsearch.errors.DataOutsideRoots` before anything is read. A user's ``objective``
    reads what its own code reads; the task's paths are not checked for it.
    """
    roots = data_roots if data_roots is not None else DataRoots()
    if objective is not None:
        takes_checkpoint = _accepts(objective, "checkpoint")

        def run_user(
            config: dict[str, Any],
            report: Report,
            _seed: int,
            checkpoint: Path | None,
            _keep: KeepPredictions | None,
            _observe: Observe | None,
            _keep_weights: KeepWeights | None,
        ) -> TrialResult:  # a user's objective hands over no predictions: no reports
            if takes_checkpoint:
                return objective(config, report, checkpoint=checkpoint)
            return objective(config, report)

        return run_user
    from hpsearch.train import train  # torch is imported only by processes that train
    from hpsearch.train.core.weights import safetensors_bytes

    def run(
        config: dict[str, Any],
        report: Report,
        seed: int,
        checkpoint: Path | None,
        keep: KeepPredictions | None,
        observe: Observe | None,
        keep_weights: KeepWeights | None,
    ) -> TrialResult:
        extra: dict[str, Any] = {} if keep is None else {"predictions": keep}
        if keep_weights is not None:
            extra["weights"] = lambda state: keep_weights(safetensors_bytes(state))
        last: dict[str, float] = {}

        def seen(_epoch: int, metrics: dict[str, float]) -> None:
            last.update(metrics)
            if observe is not None:
                observe(metrics)

        roots.check_task(spec.task)
        with reading_under(roots):  # files inside a named folder are checked as they are found
            value = train(
                config,
                spec.task,
                report,
                metric=spec.metric,
                seed=seed,
                device=device,
                checkpoint=checkpoint,
                metrics=seen,
                costs=lambda measured: seen(0, measured),  # before the first epoch
                **extra,
            )
            if spec.multi_objective:  # every objective, from the last epoch's metrics
                return {**last, spec.metric: value}
            return value

    return run


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C function without a signature
        return False
