"""The pull loop: pick a study with budget left, claim a trial within budget, run it, tell it."""

from __future__ import annotations

import logging
import math
import os
import secrets
import signal
import socket
import time
import warnings
from dataclasses import dataclass
from types import FrameType
from typing import Any

import optuna
from optuna.trial import TrialState
from pydantic import ValidationError

from hpsearch.errors import StudyNotFound, TrainingDiverged
from hpsearch.spaces import suggest_config
from hpsearch.storage import count_trials_by_state, open_storage, study_lock
from hpsearch.studies import (
    CONFIG_ATTR,
    FAIL_REASON_ATTR,
    PRUNE_REASON_ATTR,
    SEED_ATTR,
    WORKER_ATTR,
    StudySpec,
    StudyStatus,
    done_reason,
    list_studies,
    open_study,
    prune_requested,
)
from hpsearch.worker.heartbeat import Heartbeat
from hpsearch.worker.objective import Objective, TrialFunction, load_objective, trial_function

__all__ = ["run_worker", "WorkerStopped"]

log = logging.getLogger("hpsearch.worker")

_WORKERS_ATTR = "hpsearch:workers"  # study system attribute: how many workers joined the study


class WorkerStopped(BaseException):
    """SIGTERM or SIGINT reached the worker; the running trial is failed and the worker exits."""


@dataclass
class _Outcome:
    state: TrialState
    value: float | None = None
    reason: str | None = None
    stopped: bool = False  # the worker was told to stop during this trial


@dataclass
class _Joined:
    """A study as this worker serves it: one Optuna study (one sampler stream), one function."""

    study: optuna.Study
    study_id: int
    spec: StudySpec
    run: TrialFunction


def _worker_id(device: str | None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{device}" if device else "")


def _join_study(
    storage: optuna.storages.RDBStorage,
    name: str,
    *,
    objective: Objective | None,
    device: str | None,
) -> _Joined:
    """Open the study for this worker, with the sampler seeded by the order workers joined it.

    The first worker of a seeded study samples with the spec's seed itself, so a one-worker run
    is reproducible; later workers get their own streams, so they do not draw the same configs.
    """
    study_id = storage.get_study_id_from_name(name)
    with study_lock(storage, study_id):
        ordinal = storage.get_study_system_attrs(study_id).get(_WORKERS_ATTR, 0)
        storage.set_study_system_attr(study_id, _WORKERS_ATTR, ordinal + 1)
    study, spec = open_study(storage, name, seed_offset=ordinal)
    return _Joined(study, study_id, spec, trial_function(spec, objective=objective, device=device))


def _claim_trial(storage: optuna.storages.RDBStorage, joined: _Joined) -> optuna.Trial | None:
    """Ask a trial if the budget has room, atomically across all workers of the study."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(joined.study)  # trials of workers that died
    with study_lock(storage, joined.study_id):
        counts = count_trials_by_state(storage, joined.study_id)
        if done_reason(joined.spec, counts) is not None:
            return None
        held = sum(counts[s] for s in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED))
        if joined.spec.budget.trials is not None and held >= joined.spec.budget.trials:
            return None  # the rest of the budget is with running trials
        with warnings.catch_warnings():
            # hpsearch records heartbeats itself (worker.heartbeat), outside Study.optimize.
            warnings.simplefilter("ignore", UserWarning)
            trial = joined.study.ask()
        # A first heartbeat before the lock is let go: should this worker die before its
        # heartbeat thread starts, the trial is still found stale and failed, not RUNNING forever.
        storage.record_heartbeat(trial._trial_id)
        return trial


def _run_trial(
    storage: optuna.storages.RDBStorage, joined: _Joined, trial: optuna.Trial, seed: int
) -> _Outcome:
    """Run the objective on the trial's config and say how the trial ends."""
    spec = joined.spec

    def report(value: float, step: int) -> None:
        trial.report(value, step)
        if prune_requested(storage, trial._trial_id):
            raise optuna.TrialPruned(f"pruned on request at step {step}")
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned by the {spec.pruner.name} pruner at step {step}")

    try:
        config = suggest_config(trial, spec.search_space, spec.fixed)
        trial.set_user_attr(CONFIG_ATTR, config)
        value = float(joined.run(config, report, seed))
        if not math.isfinite(value):
            raise TrainingDiverged(f"the objective returned {value}")
    except optuna.TrialPruned as e:
        return _Outcome(TrialState.PRUNED, reason=str(e))
    except WorkerStopped:
        reason = "the worker was stopped (SIGTERM/SIGINT)"
        return _Outcome(TrialState.FAIL, reason=reason, stopped=True)
    except Exception as e:  # noqa: BLE001 - a config-level failure must not stop the worker
        log.debug("trial %d failed", trial.number, exc_info=True)
        return _Outcome(TrialState.FAIL, reason=f"{type(e).__name__}: {e}")
    return _Outcome(TrialState.COMPLETE, value=value)


def _finish_trial(study: optuna.Study, trial: optuna.Trial, outcome: _Outcome) -> None:
    """The one place a trial's end is written: its state, its value, and why it ended."""
    reason_attr = {TrialState.FAIL: FAIL_REASON_ATTR, TrialState.PRUNED: PRUNE_REASON_ATTR}
    try:
        if outcome.reason and outcome.state in reason_attr:
            trial.set_user_attr(reason_attr[outcome.state], outcome.reason)
        if outcome.state == TrialState.COMPLETE:
            study.tell(trial, outcome.value)
        else:
            study.tell(trial, state=outcome.state)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        # Another process already ended it: its heartbeat went stale (a long database outage)
        # and the trial was failed. The study has moved on; this result cannot be recorded.
        log.warning(
            "trial %d was ended elsewhere; its %s result is dropped",
            trial.number,
            outcome.state.name.lower(),
        )


def _needs_a_worker(status: StudyStatus) -> bool:
    if status.done:
        return False
    held = status.counts["running"] + status.finished
    return status.budget_trials is None or held < status.budget_trials


def _pick_study(storage: optuna.storages.RDBStorage) -> str | None:
    """The open study with budget free for a new trial: fewest running trials, then oldest."""
    candidates = [s for s in list_studies(storage) if _needs_a_worker(s)]
    if not candidates:
        return None
    return min(candidates, key=lambda s: (s.counts["running"], -s.elapsed_seconds)).name


def _stop_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGINT into WorkerStopped; returns the handlers to restore."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise WorkerStopped(signal.Signals(signum).name)

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _serve_one_trial(
    storage: optuna.storages.RDBStorage, joined: _Joined, trial: optuna.Trial, worker_id: str
) -> _Outcome:
    # Every trial trains with a seed, recorded with it, so any trial can be rerun exactly.
    if joined.spec.seed is None:
        seed = secrets.randbelow(2**31)
    else:
        seed = joined.spec.seed + trial.number
    outcome: _Outcome | None = None
    written = False
    try:
        with Heartbeat(storage, trial._trial_id):
            trial.set_user_attr(WORKER_ATTR, worker_id)
            trial.set_user_attr(SEED_ATTR, seed)
            outcome = _run_trial(storage, joined, trial, seed)
            _finish_trial(joined.study, trial, outcome)
            written = True
    finally:
        if not written:  # stopped or broken between the claim and the tell: never leave it RUNNING
            reason = "the worker stopped before the trial ended"
            _finish_trial(joined.study, trial, _Outcome(TrialState.FAIL, reason=reason))
    return outcome


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
    joined: dict[str, _Joined] = {}
    if study is not None:  # fail now (StudyNotFound, a bad spec), not after a poll
        joined[study] = _join_study(storage, study, objective=user_objective, device=device)
    previous_handlers = _stop_on_signals()
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
            if name not in joined:
                try:
                    joined[name] = _join_study(
                        storage, name, objective=user_objective, device=device
                    )
                except (StudyNotFound, ValidationError):
                    continue  # deleted between the pick and the load
            current = joined[name]
            trial = _claim_trial(storage, current)
            if trial is None:
                reason = done_reason(current.spec, count_trials_by_state(storage, current.study_id))
                if reason is not None and study is not None:
                    log.info("study %s: %s", name, reason)
                    break
                time.sleep(poll_seconds)  # running trials hold the rest of the budget
                continue
            started = time.perf_counter()
            outcome = _serve_one_trial(storage, current, trial, worker_id)
            ran += 1
            _log_outcome(name, trial.number, current.spec, outcome, time.perf_counter() - started)
            if outcome.stopped:
                break
    except WorkerStopped:
        log.info("worker %s stopped between trials", worker_id)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return ran


def _log_outcome(
    name: str, number: int, spec: StudySpec, outcome: _Outcome, seconds: float
) -> None:
    if outcome.state == TrialState.COMPLETE:
        detail = f"{spec.metric}={outcome.value:.4f}"
    else:
        detail = outcome.reason or ""
    state = outcome.state.name.lower()
    log.info("%s trial %d %s: %s (%.1f s)", name, number, state, detail, seconds)
