"""The pull loop: pick a study with budget left, claim a trial within budget, run it, tell it."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import time
import warnings
import zlib
from dataclasses import dataclass
from types import FrameType
from typing import Any

import optuna
from optuna.trial import TrialState

from hpsearch.errors import StudyNotFound, TrainingDiverged
from hpsearch.spaces import suggest_config
from hpsearch.storage import count_trials_by_state, open_storage, study_lock
from hpsearch.studies import (
    CONFIG_ATTR,
    FAIL_REASON_ATTR,
    WORKER_ATTR,
    StudySpec,
    done_reason,
    list_studies,
    open_study,
    prune_requested,
)
from hpsearch.worker.heartbeat import Heartbeat
from hpsearch.worker.objective import Objective, builtin_objective, load_objective

__all__ = ["run_worker", "WorkerStopped"]

log = logging.getLogger("hpsearch.worker")


class WorkerStopped(BaseException):
    """SIGTERM or SIGINT reached the worker; the running trial is failed and the worker exits."""


@dataclass
class _Outcome:
    state: TrialState
    value: float | None = None
    reason: str | None = None
    stopped: bool = False  # the worker was told to stop during this trial


def _worker_id(device: str | None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{device}" if device else "")


def _claim_trial(
    storage: optuna.storages.RDBStorage, study: optuna.Study, spec: StudySpec
) -> optuna.Trial | None:
    """Ask a trial if the budget has room, atomically across all workers of the study."""
    study_id = storage.get_study_id_from_name(study.study_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials of workers that died
    with study_lock(storage, study_id):
        counts = count_trials_by_state(storage, study_id)
        if done_reason(spec, counts) is not None:
            return None
        held = sum(counts[s] for s in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED))
        if counts[TrialState.WAITING] == 0 and spec.budget.trials is not None:
            if held >= spec.budget.trials:
                return None  # the rest of the budget is with running trials
        with warnings.catch_warnings():
            # hpsearch records heartbeats itself (worker.heartbeat), outside Study.optimize.
            warnings.simplefilter("ignore", UserWarning)
            return study.ask()


def _run_trial(
    storage: optuna.storages.RDBStorage, spec: StudySpec, trial: optuna.Trial, objective: Objective
) -> _Outcome:
    """Run the objective on the trial's config and say how the trial ends."""

    def report(value: float, step: int) -> None:
        trial.report(value, step)
        if prune_requested(storage, trial._trial_id):
            raise optuna.TrialPruned(f"pruned on request at step {step}")
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned by the {spec.pruner.name} pruner at step {step}")

    try:
        config = suggest_config(trial, spec.search_space, spec.fixed)
        trial.set_user_attr(CONFIG_ATTR, config)
        value = float(objective(config, report))
        if not math.isfinite(value):
            raise TrainingDiverged(f"the objective returned {value}")
    except optuna.TrialPruned as e:
        return _Outcome(TrialState.PRUNED, reason=str(e))
    except WorkerStopped:
        return _Outcome(TrialState.FAIL, reason="the worker was stopped (SIGTERM/SIGINT)", stopped=True)
    except Exception as e:  # noqa: BLE001 - a config-level failure must not stop the worker
        log.debug("trial %d failed", trial.number, exc_info=True)
        return _Outcome(TrialState.FAIL, reason=f"{type(e).__name__}: {e}")
    return _Outcome(TrialState.COMPLETE, value=value)


def _finish_trial(study: optuna.Study, trial: optuna.Trial, outcome: _Outcome) -> None:
    """The one place a trial's end is decided and written."""
    if outcome.state == TrialState.FAIL and outcome.reason:
        trial.set_user_attr(FAIL_REASON_ATTR, outcome.reason)
    if outcome.state == TrialState.COMPLETE:
        study.tell(trial, outcome.value)
    else:
        study.tell(trial, state=outcome.state)


def _pick_study(storage: optuna.storages.RDBStorage) -> str | None:
    """The open study that needs workers most: fewest running trials, then oldest."""
    open_studies = [s for s in list_studies(storage) if not s.done]
    if not open_studies:
        return None
    return min(open_studies, key=lambda s: (s.counts["running"], s.created_at or "")).name


def _stop_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGINT into WorkerStopped; returns the handlers to restore."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise WorkerStopped(signal.Signals(signum).name)

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def run_worker(
    storage_url: str | None = None,
    *,
    study: str | None = None,
    objective: str | None = None,
    device: str | None = None,
    wait: bool = False,
    poll_seconds: float = 2.0,
    max_trials: int | None = None,
) -> int:
    """Pull and run trials from the study database until there is no budget left.

    With ``study``, serve that study until its budget is spent; without, serve every open
    hpsearch study (the neediest first), and with ``wait`` keep polling for new ones.
    ``objective`` (``package.module:function``) replaces the built-in trainer. Returns the number
    of trials this worker ran.
    """
    storage = open_storage(storage_url)
    user_objective = load_objective(objective) if objective else None
    worker_id = _worker_id(device)
    if study is not None:
        open_study(storage, study)  # fail now, with StudyNotFound, not after a poll
    previous_handlers = _stop_on_signals()
    # One study object (and so one sampler and its random stream) per study for this worker.
    opened: dict[str, tuple[optuna.Study, StudySpec]] = {}
    seed_offset = zlib.crc32(worker_id.encode())
    ran = 0
    log.info("worker %s serving %s", worker_id, study or "every open study")
    try:
        while max_trials is None or ran < max_trials:
            name = study or _pick_study(storage)
            if name is None:
                if not wait:
                    log.info("no study has budget left; exiting")
                    break
                time.sleep(poll_seconds)
                continue
            if name not in opened:
                try:
                    opened[name] = open_study(storage, name, seed_offset=seed_offset)
                except StudyNotFound:
                    if study is not None:
                        raise
                    continue  # deleted between the pick and the load
            optuna_study, spec = opened[name]
            trial = _claim_trial(storage, optuna_study, spec)
            if trial is None:
                study_id = storage.get_study_id_from_name(name)
                reason = done_reason(spec, count_trials_by_state(storage, study_id))
                if reason is not None and study is not None:
                    log.info("study %s: %s", name, reason)
                    break
                time.sleep(poll_seconds)  # running trials hold the rest of the budget
                continue
            trial.set_user_attr(WORKER_ATTR, worker_id)
            seed = None if spec.seed is None else spec.seed + trial.number
            run = user_objective or builtin_objective(spec, seed=seed, device=device)
            started = time.perf_counter()
            with Heartbeat(storage, trial._trial_id):
                outcome = _run_trial(storage, spec, trial, run)
            _finish_trial(optuna_study, trial, outcome)
            ran += 1
            _log_outcome(name, trial.number, spec, outcome, time.perf_counter() - started)
            if outcome.stopped:
                break
    except WorkerStopped:
        log.info("worker %s stopped between trials", worker_id)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return ran


def _log_outcome(name: str, number: int, spec: StudySpec, outcome: _Outcome, seconds: float) -> None:
    detail: Any
    if outcome.state == TrialState.COMPLETE:
        detail = f"{spec.metric}={outcome.value:.4f}"
    else:
        detail = outcome.reason
    log.info("%s trial %d %s: %s (%.1f s)", name, number, outcome.state.name.lower(), detail, seconds)
