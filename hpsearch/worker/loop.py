"""The pull loop: pick a study with budget left, claim a trial within budget, run it, tell it.

Faults a worker survives, and how:

- killed (SIGKILL, power loss, preemption): its trials stop beating; the next worker to claim a
  trial of the study, or to find the study's budget held by running trials, fails them
  (``worker.stale``) and the storage's retry callback queues a copy with the same params to run
  again (``hpsearch.db.storage``);
- a database restart during a claim: the trial and its first heartbeat are one commit, and a
  retried claim finds the trial a lost reply was about (``worker.claim``);
- stopped (SIGTERM/SIGINT): the objective is interrupted at once, the trial is failed with the
  reason and queued again the same way, and the worker exits;
- CUDA out of memory: the same config runs again with half the batch (``worker.oom``);
- a database outage: every storage call is retried with backoff (``worker.reconnect``).

With a checkpoint directory, a retried trial resumes from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.study._tell import _tell_with_warning
from optuna.trial import TrialState
from pydantic import ValidationError

from hpsearch.db import fleet
from hpsearch.analysis.artifacts import (
    ArtifactStore,
    KeepPolicy,
    keep_best_predictions,
    open_artifact_store,
    parse_keep,
    upload_predictions,
    upload_weights,
)
from hpsearch.data_roots import DataRoots
from hpsearch.errors import (
    SpaceError,
    StudyFailed,
    StudyNotFound,
    TaskError,
    TrainingDiverged,
    UsageError,
    WorkerCannotServe,
    WorkerSetupError,
    WorkerStopped,
)
from hpsearch.analysis.misfit import (
    MISFIT_STRATEGIES,
    check_prior,
    note_due,
    store_prior_check,
    claim_checkpoint,
    update_misfit_note,
)
from hpsearch.safe_names import study_folder
from hpsearch.settings import get_settings
from hpsearch.db.queries import (
    count_retries,
    count_trials_by_state,
    count_trials_by_study,
    studies_with_user_attr,
)
from hpsearch.db.storage import (
    RETRY_OF_ATTR,
    grace_seconds,
    heartbeat_interval,
    open_storage_when_up,
    redact,
    set_trial_user_attrs,
    study_lock,
    write_running_trial,
)
from hpsearch.strategy import make_pruner
from hpsearch.studies import (
    CONFIG_ATTR,
    FAIL_REASON_ATTR,
    FAIL_TRACEBACK_ATTR,
    PRUNE_REASON_ATTR,
    PRUNE_REQUEST_ATTR,
    SEED_ATTR,
    SPEC_ATTR,
    WORKER_ATTR,
    Budget,
    PrunerSpec,
    StudySpec,
    done_reason,
    failed_reason,
    is_stopped,
    load_spec,
    open_study,
    prune_requested,
    trials_spent,
)
from hpsearch.strategy.pareto_pruner import RUNGS_ATTR, ParetoRungPruner
from hpsearch.studies.checks import dataset_folder
from hpsearch.studies.objectives import (
    INFEASIBLE_ATTR,
    METRICS_ATTR,
    Bound,
    Infeasible,
    constraint_values,
    objective_values,
    violations,
)
from hpsearch.studies.history import fail_study, history_lengths, study_failure
from hpsearch.families import USER_OBJECTIVE_FAMILY, TaskSpec
from hpsearch.worker.claim import claim_trial, find_claimed, new_trial
from hpsearch.worker.heartbeat import Heartbeat
from hpsearch.worker.objective import (
    Objective,
    TrialFunction,
    bounded_traceback,
    load_objective,
    trial_function,
)
from hpsearch.worker.oom import run_with_oom_retries
from hpsearch.worker.reconnect import Reconnect
from hpsearch.worker.sampling import sample_config
from hpsearch.worker.stale import fail_stale_trials

__all__ = ["OOM_ATTR", "WorkerStopped", "run_worker"]

log = logging.getLogger("hpsearch.worker")

#: Trial user attribute: the batch/accumulation each CUDA out-of-memory retry ran with.
OOM_ATTR = "oom_retries"
#: Seconds between reads of a trial's prune request (one read per report for epochs longer).
PRUNE_REQUEST_POLL_SECONDS = 1.0
#: Seconds between reads of the study's pruner (a change applies to the next trial claimed).
PRUNER_POLL_SECONDS = 1.0
_WORKERS_ATTR = "hpsearch:workers"  # study system attribute: how many workers joined the study


@dataclass
class _Outcome:
    state: TrialState
    value: float | None = None
    reason: str | None = None
    traceback: str | None = None  # a user objective's traceback, when it raised (bounded)
    stopped: bool = False  # the worker was told to stop during this trial
    fatal: bool = False  # the error recurs on every trial: the study fails (see _stops_study)
    # This worker's own setup refused the task (a WorkerSetupError: its data roots): the trial
    # is queued again for another worker, and this one stops serving the study.
    worker_setup: bool = False
    predictions: Any = None  # the final model's ValPredictions, when reports are on
    weights: bytes | None = None  # the final model's weights (safetensors), likewise
    values: list[float] | None = None  # one per objective (a complete trial)
    metrics: dict[str, float] | None = None  # every metric the trial reported, for constraints
    infeasible: bool = False  # it broke a constraint (it ends pruned)


@dataclass
class _Joined:
    """A study as this worker serves it: one Optuna study (one sampler stream), one function."""

    study: optuna.Study
    study_id: int
    spec: StudySpec
    run: TrialFunction
    pruner_read_at: float = -math.inf  # time.monotonic() of the last read of the pruner
    misfit_mark: int = 0  # the checkpoint (finished trials) of this worker's last misfit note
    #: The study's parameter distributions this worker has checked (``write_running_trial``).
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)


class _Signals:
    """SIGTERM/SIGINT: interrupt the objective at once; elsewhere, stop at the next safe point.

    Database bookkeeping (claiming a trial, writing its result) is not interrupted by the first
    signal, so no trial is left half-written; a second signal interrupts anything.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._interruptible = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        again = self.requested is not None
        self.requested = name
        if self._interruptible or again:
            raise WorkerStopped(name)
        log.info("%s received: stopping after this step", name)

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def check(self) -> None:
        if self.requested is not None:
            raise WorkerStopped(self.requested)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block a stop signal interrupts at once (training, sleeping)."""
        self.check()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False


class _Worker:
    """One worker process's state: its storage, identity, joined studies and signal handling."""

    def __init__(
        self,
        storage: optuna.storages.RDBStorage,
        *,
        objective: Objective | None,
        device: str | None,
        checkpoint_dir: Path | None,
        poll_seconds: float,
        artifact_store: ArtifactStore | None = None,
        keep: KeepPolicy | None = None,
        data_roots: DataRoots | None = None,
    ) -> None:
        self.storage = storage
        # What the built-in trainer may read; by default bundled datasets only.
        self.data_roots = data_roots if data_roots is not None else DataRoots()
        self.artifact_store = artifact_store  # None: reports off (or a user objective)
        self.keep = keep or parse_keep()
        self.link = Reconnect()
        self.objective = objective
        self.named_study: str | None = None  # the study given with --study, if any
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.poll_seconds = poll_seconds
        self.worker_id = fleet.new_worker_id(device)
        self.trials_run = 0  # trials run to an end, as the fleet row says it
        self.signals = _Signals()
        self.joined: dict[str, _Joined] = {}
        # For picking studies: each spec with the study's count of changes when it was read.
        self._specs: dict[int, tuple[int, StudySpec]] = {}
        self._stale_checked_at: dict[int, float] = {}  # study id -> monotonic time of last check
        # Studies this worker cannot serve (a WorkerSetupError): study id -> (the study's count
        # of changes then, the line that says why). A change to the study lets it try again.
        self.skipped: dict[int, tuple[int, str]] = {}
        self._last_idle_beat = 0.0

    # -- joining and picking studies -------------------------------------------------------

    def join(self, name: str) -> _Joined:
        """Open the study for this worker, with the sampler seeded by the order workers joined.

        The first worker of a seeded study samples with the spec's seed itself, so a one-worker
        run is reproducible; later workers get their own streams, so they do not draw the same
        configs.
        """
        if name not in self.joined:
            self.joined[name] = self.link.call("joining the study", self._join, name)
        return self.joined[name]

    def _join(self, name: str) -> _Joined:
        storage = self.storage
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError as e:
            raise StudyNotFound(
                f"no study named {name!r} in {redact(storage.url)}: see the names with "
                "`hpsearch status`, or pass the study database with --storage"
            ) from e
        with study_lock(storage, study_id):
            ordinal = storage.get_study_system_attrs(study_id).get(_WORKERS_ATTR, 0)
            storage.set_study_system_attr(study_id, _WORKERS_ATTR, ordinal + 1)
        study, spec = open_study(storage, name, seed_offset=ordinal)
        if spec.task.family == USER_OBJECTIVE_FAMILY and self.objective is None:
            raise UsageError(
                f"study {name!r} is for your own training function (task family "
                f"{USER_OBJECTIVE_FAMILY!r}): start the worker with --objective "
                "package.module:function"
            )
        run = trial_function(
            spec, objective=self.objective, device=self.device, data_roots=self.data_roots
        )
        return _Joined(study, study_id, spec, run)

    def pick_study(self) -> str | None:
        """The open study with budget free for a new trial that has been served least.

        Fewest running trials first, then fewest trials so far, then the oldest: a study
        submitted later is served alongside an earlier big one, not after it.
        """
        storage = self.storage
        counts = count_trials_by_study(storage)
        revisions = history_lengths(storage)  # a change (PATCH) makes the spec read again
        best: tuple[tuple[int, int, int], str] | None = None
        for study_id, name in studies_with_user_attr(storage, SPEC_ATTR):
            revision = revisions.get(study_id, 0)
            cached = self._specs.get(study_id)
            if cached is not None and cached[0] == revision:
                spec = cached[1]
            else:
                try:
                    spec = load_spec(storage, name)
                except (StudyNotFound, ValidationError):
                    continue  # deleted meanwhile, or a spec this version cannot read
                self._specs[study_id] = (revision, spec)
                if name in self.joined:  # changed: the joined study reads it at its next claim
                    self.joined[name].pruner_read_at = -math.inf
            if spec.task.family == USER_OBJECTIVE_FAMILY and self.objective is None:
                continue  # only a worker with the study's own function (--objective) can run it
            skipped = self.skipped.get(study_id)
            if skipped is not None and skipped[0] == revision:
                continue  # this worker's setup cannot run it (see skip)
            by_state = counts.get(study_id) or {s: 0 for s in TrialState}
            if self._takes_no_trial(study_id, spec, by_state):
                if not self._check_held_budget(study_id, name, spec, by_state):
                    continue
                by_state = count_trials_by_state(storage, study_id)  # stale ones were failed
                if self._takes_no_trial(study_id, spec, by_state):
                    continue
            running = by_state[TrialState.RUNNING]
            finished = by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED]
            key = (running, running + finished, study_id)
            if best is None or key < best[0]:
                best = (key, name)
        return None if best is None else best[1]

    def _check_held_budget(
        self, study_id: int, name: str, spec: StudySpec, counts: dict[TrialState, int]
    ) -> bool:
        """Check a study whose budget left is all held by running trials for stale ones; whether
        the check ran (so the counts may have changed).

        Should their workers be gone, only a stale check frees the budget, and no worker would
        claim a trial of this study (and check it) until then.
        """
        if not counts[TrialState.RUNNING] or self._done(study_id, spec, counts) is not None:
            return False
        try:
            # Not joined just to look: joining takes a seed ordinal and builds the objective.
            joined = self.joined.get(name)
            study = joined.study if joined else self._watch(name)
            return self.check_stale(study)
        except (StudyNotFound, KeyError, ValidationError):
            self.joined.pop(name, None)  # deleted meanwhile
            return False

    def _watch(self, name: str) -> optuna.Study:
        return self.link.call(
            "opening the study",
            optuna.load_study,
            study_name=name,
            storage=self.storage,
            sampler=optuna.samplers.RandomSampler(),
        )

    def _takes_no_trial(
        self, study_id: int, spec: StudySpec, counts: dict[TrialState, int]
    ) -> bool:
        if self._done(study_id, spec, counts) is not None:
            return True
        retries = self._retries(study_id, spec, counts)
        held = counts[TrialState.RUNNING] + trials_spent(spec, counts, retries=retries)
        # Without a free slot, the rest of the budget is with running trials.
        return spec.budget.trials is not None and held >= spec.budget.trials

    def _done(self, study_id: int, spec: StudySpec, counts: dict[TrialState, int]) -> str | None:
        return done_reason(
            spec,
            counts,
            stopped=is_stopped(self.storage, study_id),
            retries=self._retries(study_id, spec, counts),
            failure=study_failure(self.storage, study_id),
        )

    def _retries(self, study_id: int, spec: StudySpec, counts: dict[TrialState, int]) -> int:
        # Retries only matter once failures pass the limit, or in a grid, where a failed point
        # counts against the budget unless retried: count them only then.
        failing = counts[TrialState.FAIL] > spec.budget.max_failures
        if failing or (spec.strategy == "grid" and counts[TrialState.FAIL]):
            return count_retries(self.storage, study_id)
        return 0

    # -- claiming, running and ending a trial ----------------------------------------------

    def claim(self, joined: _Joined) -> optuna.Trial | None:
        """Ask a trial if the budget has room, atomically across all workers of the study.

        The trial and its first heartbeat are written by one commit (``worker.claim``), so a
        database restart during the claim cannot leave a RUNNING trial nothing ever fails.
        """
        now = time.monotonic()
        self.check_stale(joined.study)
        if now >= joined.pruner_read_at + PRUNER_POLL_SECONDS:
            self.link.call("reading the pruner", self._refresh_pruner, joined)
            joined.pruner_read_at = now
        # One token for all attempts: an attempt whose commit landed although its reply was
        # lost is found again by the next attempt, instead of a second trial being claimed.
        token = f"{self.worker_id}:{secrets.token_hex(8)}"
        attempts = 0

        def claim_once() -> int | None:
            nonlocal attempts
            attempts += 1
            return self._claim_locked(joined, token, retried=attempts > 1)

        trial_id = self.link.call("claiming a trial", claim_once)
        if trial_id is None:
            return None
        return self.link.call(
            "reading the trial",
            new_trial,
            joined.study,
            self.storage,
            trial_id,
            joined.distributions,
        )

    def check_stale(self, study: optuna.Study) -> bool:
        """Fail the study's trials whose worker is gone (their retries are queued), at most
        once per heartbeat interval; whether it looked this time.

        A dead worker's trial is found stale only a grace period (3 heartbeats) after its last
        beat, or after its start if it never beat: looking once per interval instead of at every
        claim adds at most one interval to that, and spares queries per trial.
        """
        now = time.monotonic()
        interval = heartbeat_interval(self.storage)
        # Right after an outage every trial's heartbeat looks old: give the other workers one
        # grace period to beat again before calling their trials dead.
        checked_at = self._stale_checked_at.get(study._study_id, -math.inf)
        if now < checked_at + interval or self.link.troubled_within(grace_seconds(self.storage)):
            return False
        self.link.call("failing stale trials", fail_stale_trials, self.storage, study)
        self._stale_checked_at[study._study_id] = now
        return True

    def _claim_locked(self, joined: _Joined, token: str, *, retried: bool) -> int | None:
        storage = self.storage
        with study_lock(storage, joined.study_id):
            # An earlier attempt of this claim may have committed before the connection broke.
            claimed = find_claimed(storage, joined.study_id, token) if retried else None
            if claimed is not None:
                log.info("claimed trial id %d although the reply was lost; running it", claimed)
                return claimed
            counts = count_trials_by_state(storage, joined.study_id)
            if self._takes_no_trial(joined.study_id, joined.spec, counts):
                return None
            name, ran = joined.study.study_name, self.trials_run

            def beat(conn: sqlalchemy.Connection, number: int) -> None:
                fleet.beat(conn, self.worker_id, study=name, trial_number=number, trials_run=ran)

            return claim_trial(storage, joined.study_id, token, also=beat)

    def _refresh_pruner(self, joined: _Joined) -> None:
        """Use the pruner, budget and task data the study has now: they can be changed while
        the study runs (``hpsearch pruner``, ``hpsearch extend``)."""
        stored = self.storage.get_study_user_attrs(joined.study_id).get(SPEC_ATTR, {})
        budget = Budget.model_validate(stored.get("budget", joined.spec.budget))
        task = TaskSpec.model_validate(stored.get("task", joined.spec.task))
        if budget != joined.spec.budget or task != joined.spec.task:
            retrain = task != joined.spec.task
            joined.spec = joined.spec.model_copy(update={"budget": budget, "task": task})
            if retrain:  # the trial function reads the task's data
                joined.run = trial_function(
                    joined.spec,
                    objective=self.objective,
                    device=self.device,
                    data_roots=self.data_roots,
                )
            log.info("study %s: its budget or task was changed", joined.study.study_name)
        pruner = PrunerSpec.model_validate(stored.get("pruner", joined.spec.pruner))
        if pruner != joined.spec.pruner:
            joined.study.pruner = make_pruner(
                pruner.name, epochs=joined.spec.task.epochs, **pruner.args
            )
            joined.spec = joined.spec.model_copy(update={"pruner": pruner})
            log.info("study %s: pruner is now %s", joined.study.study_name, pruner.name)

    def serve(self, joined: _Joined, trial: optuna.Trial) -> _Outcome:
        """Run one claimed trial to its end and write that end; never leaves it RUNNING."""
        storage, link = self.storage, self.link
        # The trial as the claim read it (Optuna 5's Trial has no public system_attrs): no query.
        system_attrs = trial._cached_frozen_trial.system_attrs
        origin = system_attrs.get(RETRY_OF_ATTR)  # the trial this one retries, if any
        inherited_seed = trial.user_attrs.get(SEED_ATTR)  # as read by ask(): no query
        if origin is not None and inherited_seed is not None:
            seed = int(inherited_seed)  # a retry trains exactly as the original
        elif joined.spec.seed is None:
            seed = secrets.randbelow(2**31)
        else:
            seed = joined.spec.seed + trial.number
        checkpoint = self._checkpoint_path(joined, origin if origin is not None else trial.number)
        name = joined.study.study_name

        def beat() -> None:
            fleet.worker_beat(storage, self.worker_id, study=name, trial_number=trial.number)

        outcome: _Outcome | None = None
        try:
            # The claim recorded the trial's first heartbeat: the thread starts one interval on.
            with Heartbeat(
                storage, trial._trial_id, also=beat, on_failure=link.note_trouble, beaten=True
            ):
                attrs: dict[str, Any] = {WORKER_ATTR: self.worker_id, SEED_ATTR: seed}
                if origin is not None:  # the copy inherited these from the failed trial
                    cleared = (FAIL_REASON_ATTR, FAIL_TRACEBACK_ATTR)
                    attrs.update({**dict.fromkeys(cleared), PRUNE_REQUEST_ATTR: False})
                outcome = self._run(joined, trial, seed, checkpoint, attrs)
                if outcome.predictions is not None and outcome.state == TrialState.COMPLETE:
                    self._keep_predictions(trial, outcome.predictions)  # before the tell
                if outcome.weights is not None and outcome.state == TrialState.COMPLETE:
                    self._keep_weights(trial, outcome.weights)
                self._finish(joined, trial, outcome)
        except WorkerStopped:
            if outcome is not None:  # stopped while writing the result: it is being retried
                raise
            outcome = _Outcome(TrialState.FAIL, reason=_stopped_reason(self.signals), stopped=True)
            self._finish(joined, trial, outcome, give_up_after=grace_seconds(self.storage))
            raise
        except BaseException:
            if outcome is None:  # broken between the claim and the tell
                reason = "the worker failed before the trial ended"
                outcome = _Outcome(TrialState.FAIL, reason=reason, stopped=True)
                self._finish(joined, trial, outcome, give_up_after=grace_seconds(self.storage))
            raise
        if checkpoint is not None and not outcome.stopped:
            checkpoint.unlink(missing_ok=True)  # the trial is over; nothing will resume it
        if self.artifact_store is not None:
            self._clean_up_predictions(joined)
        return outcome

    def _keep_predictions(self, trial: optuna.Trial, predictions: Any) -> None:
        """Upload the trial's predictions for reports; a failure only costs the report."""
        self._upload(trial, upload_predictions, predictions, "its predictions", "no report")

    def _keep_weights(self, trial: optuna.Trial, weights: bytes) -> None:
        """Upload the trial's final weights for ``hpsearch export``; a failure only costs the
        export."""
        self._upload(trial, upload_weights, weights, "its weights", "no export")

    def _upload(
        self, trial: optuna.Trial, upload: Callable[..., Any], data: Any, what: str, cost: str
    ) -> None:
        assert self.artifact_store is not None
        try:
            upload(self.storage, self.artifact_store, trial._trial_id, data)
        except Exception as e:  # noqa: BLE001 - never fail a trial over what it keeps
            log.warning(
                "trial %d: could not keep %s in %s (%s of it): %s",
                trial.number,
                what,
                self.artifact_store.location,
                cost,
                e,
            )

    def _clean_up_predictions(self, joined: _Joined) -> None:
        """Drop the predictions and weights of trials outside the best N kept
        (``--keep-artifacts``)."""
        assert self.artifact_store is not None
        try:
            keep_best_predictions(self.storage, self.artifact_store, joined.study_id, self.keep)
        except Exception as e:  # noqa: BLE001 - retried after the next trial
            log.warning(
                "study %s: cleaning up kept predictions failed: %s", joined.study.study_name, e
            )

    def _run(
        self,
        joined: _Joined,
        trial: optuna.Trial,
        seed: int,
        checkpoint: Path | None,
        attrs: dict[str, Any],
    ) -> _Outcome:
        """Run the objective on the trial's config and say how the trial ends.

        ``attrs`` (user attributes of the trial) are written with the sampled config and its
        parameters, in one transaction (:mod:`hpsearch.worker.sampling`).
        """
        storage, link, spec = self.storage, self.link, joined.spec

        # Optuna's should_prune reads the whole trial back: skip it when nothing can prune.
        pruner_prunes = not isinstance(joined.study.pruner, optuna.pruners.NopPruner)
        next_request_check = time.monotonic() + PRUNE_REQUEST_POLL_SECONDS

        # Optuna keeps no intermediate values of a study of several objectives, nor prunes it.
        single = not spec.multi_objective

        def report(value: float, step: int) -> None:
            nonlocal next_request_check
            if single:
                with warnings.catch_warnings():
                    # A retried trial re-reports the epochs it inherited; Optuna keeps the first.
                    warnings.simplefilter("ignore", UserWarning)
                    link.call("reporting", trial.report, value, step)
            if time.monotonic() >= next_request_check:  # reports of quick steps share a read
                next_request_check = time.monotonic() + PRUNE_REQUEST_POLL_SECONDS
                if link.call("reading prune requests", prune_requested, storage, trial._trial_id):
                    raise optuna.TrialPruned(f"pruned on request at step {step}")
            if not single and isinstance(joined.study.pruner, ParetoRungPruner):
                pareto_rung(step)
            if single and pruner_prunes and link.call("asking the pruner", trial.should_prune):
                raise optuna.TrialPruned(f"pruned by the {spec.pruner.name} pruner at step {step}")

        metrics: dict[str, float] = {}  # what the trainer measured so far (costs first)
        rungs: dict[str, list[float]] = {}  # several objectives: the vectors at the rungs

        def pareto_rung(step: int) -> None:
            pruner = joined.study.pruner
            assert isinstance(pruner, ParetoRungPruner)
            vector = [metrics.get(o.metric) for o in spec.objectives]
            last = step >= spec.task.epochs  # the trial is trained: its point is kept
            if last or not pruner.is_rung(step) or any(v is None for v in vector):
                return  # (a function of your own reports one value: nothing to sort)
            values = [float(v) for v in vector if v is not None]
            rungs[str(step)] = values
            link.call("reporting", trial.set_user_attr, RUNGS_ATTR, dict(rungs))
            study, number = joined.study, trial.number
            if link.call("asking the pruner", pruner.stops, study, number, step, values):
                raise optuna.TrialPruned(
                    f"pruned by the pareto pruner at step {step}: dominated at its rung"
                )

        def observe(measured: dict[str, float]) -> None:
            metrics.update(measured)
            broken = violations(spec.constraints, measured)
            if broken:  # the costs come before training, with no validation metric yet
                when = "after an epoch" if "val_loss" in measured else "before training"
                raise Infeasible(f"infeasible {when}: {'; '.join(broken)}")

        adjustments: list[dict[str, int]] = []
        kept: list[Any] = []  # the predictions of the attempt that finished (after OOM retries)
        keep = kept.append if self.artifact_store is not None else None
        kept_weights: list[bytes] = []  # likewise, its final weights
        keep_weights = kept_weights.append if self.artifact_store is not None else None

        def record_oom_retry(adjusted: dict[str, Any]) -> None:
            keys = ("train.batch_size", "train.grad_accum")
            adjustments.append({k: adjusted[k] for k in keys})
            link.call("writing the trial", trial.set_user_attr, OOM_ATTR, adjustments)

        try:
            config, params = link.call(
                "sampling the config", sample_config, trial, spec.search_space, spec.fixed
            )
            link.call(
                "writing the trial",
                write_running_trial,
                storage,
                trial._trial_id,
                params=params,
                user_attrs={**attrs, CONFIG_ATTR: config},
                known=joined.distributions,
            )
            with self.signals.interruptible():
                result = run_with_oom_retries(
                    lambda c: joined.run(c, report, seed, checkpoint, keep, observe, keep_weights),
                    config,
                    on_retry=record_oom_retry,
                )
            if isinstance(result, Mapping):
                metrics.update({k: float(v) for k, v in result.items()})
                broken = violations(spec.constraints, metrics)
                if broken:
                    raise Infeasible(f"infeasible: {'; '.join(broken)}")
            values = objective_values(spec, result)
            bad = [v for v in values if not math.isfinite(v)]
            if bad:
                raise TrainingDiverged(f"the objective returned {bad[0]}")
        except Infeasible as e:
            return _Outcome(TrialState.PRUNED, reason=str(e), metrics=metrics, infeasible=True)
        except optuna.TrialPruned as e:
            return _Outcome(TrialState.PRUNED, reason=str(e), metrics=metrics or None)
        except WorkerStopped:
            raise
        except Exception as e:
            log.debug("trial %d failed", trial.number, exc_info=True)
            # A user's function keeps its traceback with the trial: the line alone rarely says
            # where in their code it broke. The built-in trainer's reason says it all.
            tb = bounded_traceback(e) if self.objective is not None else None
            # A worker with its own function may serve a study of the built-in trainer: its
            # function's mistakes fail only its trials there, never that study for everyone.
            borrowed = (
                self.objective is not None
                and spec.task.family != USER_OBJECTIVE_FAMILY
                and self.named_study != joined.study.study_name
            )
            setup = isinstance(e, WorkerSetupError)  # this worker's, not the study's
            fatal = (
                not borrowed
                and not setup
                and _stops_study(e, user_objective=self.objective is not None)
            )
            return _Outcome(
                TrialState.FAIL,
                reason=f"{type(e).__name__}: {e}",
                traceback=tb,
                fatal=fatal,
                worker_setup=setup,
            )
        return _Outcome(
            TrialState.COMPLETE,
            value=values[0],
            values=values,
            metrics=metrics or None,
            predictions=kept[-1] if kept else None,
            weights=kept_weights[-1] if kept_weights else None,
        )

    def _finish(
        self,
        joined: _Joined,
        trial: optuna.Trial,
        outcome: _Outcome,
        *,
        give_up_after: float | None = None,
    ) -> None:
        """Write the trial's end; a stopped trial is queued to run again (a bounded number of
        times, as for a killed worker's trial)."""
        link = self.link if give_up_after is None else Reconnect(give_up_after=give_up_after)
        ended = link.call(
            "writing the result",
            _finish_trial,
            self.storage,
            joined.study,
            trial,
            outcome,
            joined.spec.constraints,
        )
        if ended and outcome.fatal:  # every further trial would fail the same way
            link.call("failing the study", self._fail_study, joined, trial, outcome)
        if ended and (outcome.stopped or outcome.worker_setup):  # another worker runs it
            retry = self.storage.get_heartbeat_stale_trial_callback()
            if retry is not None:
                failed = link.call("reading the trial", self.storage.get_trial, trial._trial_id)
                link.call("queueing a retry", retry, joined.study, failed)

    def _fail_study(self, joined: _Joined, trial: optuna.Trial, outcome: _Outcome) -> None:
        """Fail the study over this trial's error, unless its task was changed meanwhile (a
        fix that landed while the trial ran: the next trial runs with it)."""
        name = joined.study.study_name

        def changed() -> bool:  # asked under the study lock, where a PATCH stores its fix
            stored = self.storage.get_study_user_attrs(joined.study_id).get(SPEC_ATTR, {})
            return TaskSpec.model_validate(stored.get("task", {})) != joined.spec.task

        failure = fail_study(
            self.storage,
            joined.study_id,
            reason=outcome.reason or "an error that recurs on every trial",
            trial=trial.number,
            worker=self.worker_id,
            unless=changed,
        )
        if failure is None:
            log.info("study %s: its task changed while trial %d ran", name, trial.number)
            return
        log.error("study %s: %s", name, failed_reason(name, failure))

    def skip(self, joined: _Joined, trial: optuna.Trial, outcome: _Outcome) -> str:
        """Stop serving a study this worker's own setup cannot run (a :class:`WorkerSetupError`)
        until the study is changed; returns the one line that says why and what to do."""
        name = joined.study.study_name
        revision = self.link.call("reading the study", history_lengths, self.storage)
        reason = outcome.reason or "this worker's setup cannot run its task"
        line = (
            f"study {name!r} cannot run on this worker: {reason}"
            f"{_restart_advice(joined.spec.task, reason)}; trial {trial.number} is queued "
            "again and the study stays open for workers that can read its data"
        )
        self.skipped[joined.study_id] = (revision.get(joined.study_id, 0), line)
        return line

    def note_prior_misfit(self, joined: _Joined) -> None:
        """At 15, 25, 35, ... finished trials (every 50 from 100), check the study's evidence
        against the checklist and write it in the study's dashboard note (:mod:`hpsearch.analysis.misfit`),
        unless another worker has done so at this checkpoint.

        One count query per trial otherwise. A failure costs only the note: it is logged.
        """
        if joined.spec.strategy not in MISFIT_STRATEGIES:
            return
        name = joined.study.study_name
        try:
            counts = count_trials_by_state(self.storage, joined.study_id)
            finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
            mark = note_due(finished, joined.misfit_mark)
            if mark is None:
                return
            joined.misfit_mark = mark
            if not claim_checkpoint(self.storage, joined.study_id, mark):
                return  # another worker writes the note at this checkpoint
            check = check_prior(
                self.storage,
                joined.study_id,
                name=name,
                space=joined.spec.search_space,
                finished=finished,
            )
            with study_lock(self.storage, joined.study_id):  # one writer of the note at a time
                store_prior_check(self.storage, joined.study_id, check)
                if update_misfit_note(joined.study, check):
                    log.info("study %s: the dashboard note says: %s", name, check.line)
        except Exception as e:  # noqa: BLE001 - never fail a trial over its note
            log.warning("study %s: could not write the prior misfit note: %s", name, e)

    def _checkpoint_path(self, joined: _Joined, origin: int) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        # The study's id, never its name: a name can be changed outside hpsearch (the dashboard,
        # Optuna itself) to anything, '../..' included, and must not become a path.
        return self.checkpoint_dir / study_folder(joined.study_id) / f"trial-{origin}.pt"

    def raise_if_failed(self, names: set[str]) -> None:
        """Raise :class:`StudyFailed` (one line per study) when every study of ``names`` (those
        this worker served) is failed now, or :class:`WorkerCannotServe` when every one is
        failed or one this worker's setup cannot run (:meth:`skip`), so that the worker exits
        non-zero, saying why."""
        lines = []
        failed = False
        for name in sorted(names):
            joined = self.joined.get(name)
            if joined is None:
                return  # deleted meanwhile
            skipped = self.skipped.get(joined.study_id)
            if skipped is not None:
                lines.append(skipped[1])
                continue
            failed = True
            failure = self.link.call(
                "reading the study", study_failure, self.storage, joined.study_id
            )
            if failure is None:
                return
            lines.append(f"study {name!r} {failed_reason(name, failure)}")
        if lines:
            raise (StudyFailed if failed else WorkerCannotServe)("; ".join(lines))

    # -- idling ----------------------------------------------------------------------------

    def idle(self) -> None:
        """Wait one poll interval (interruptible), keeping the fleet heartbeat fresh."""
        interval = heartbeat_interval(self.storage)
        if time.monotonic() - self._last_idle_beat >= interval:
            self._last_idle_beat = time.monotonic()
            with contextlib.suppress(Exception):
                fleet.worker_beat(self.storage, self.worker_id, trials_run=self.trials_run)
        with self.signals.interruptible():
            time.sleep(self.poll_seconds)


def _finish_trial(
    storage: optuna.storages.RDBStorage,
    study: optuna.Study,
    trial: optuna.Trial,
    outcome: _Outcome,
    constraints: Mapping[str, Bound] | None = None,
) -> bool:
    """The one place a trial's end is written: why it ended and what it measured (one
    transaction), its constraint values (``constraints``, the spec's), then its state and values.

    Returns False when the trial had already been ended elsewhere.
    """
    reason_attr = {TrialState.FAIL: FAIL_REASON_ATTR, TrialState.PRUNED: PRUNE_REASON_ATTR}
    attrs: dict[str, Any] = {}
    if outcome.reason and outcome.state in reason_attr:
        attrs[reason_attr[outcome.state]] = outcome.reason
    if outcome.traceback and outcome.state == TrialState.FAIL:
        attrs[FAIL_TRACEBACK_ATTR] = outcome.traceback
    if outcome.metrics:
        attrs[METRICS_ATTR] = outcome.metrics
    if outcome.infeasible:
        attrs[INFEASIBLE_ATTR] = outcome.reason
    try:
        if attrs:
            set_trial_user_attrs(storage, trial._trial_id, attrs)
        if constraints:  # Optuna's samplers read them in tell (> 0: broken)
            for name, violation in constraint_values(constraints, outcome.metrics or {}).items():
                trial.set_constraint(name, violation)
        # Study.tell, less the read of the whole trial back that it returns (as Study.optimize
        # tells): nothing here uses it.
        if outcome.state == TrialState.COMPLETE:
            values = outcome.values
            assert values is not None  # a complete outcome has one value per objective
            _tell_with_warning(study, trial, values if len(values) > 1 else values[0])
        else:
            _tell_with_warning(study, trial, state=outcome.state)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError, KeyError):
        # Another process already ended it: its heartbeat went stale (a database outage longer
        # than the grace period) and it was failed and queued again. Its retry runs instead.
        log.warning(
            "trial %d was ended elsewhere; its %s result is dropped",
            trial.number,
            outcome.state.name.lower(),
        )
        return False
    return True


def _stops_study(error: Exception, *, user_objective: bool) -> bool:
    """Whether ``error`` recurs on every trial of the study, whatever the config: the study fails.

    The task's data is missing or unreadable, or names a column that is not there (a
    :class:`TaskError`, which a user's function may raise too); the space cannot give a config
    (a :class:`SpaceError`); a user's function cannot import what it needs. Anything else fails
    only the trial: a config that does not train (NaN, divergence, a bad value) is the search's
    business, and CUDA out of memory, a lost connection and a killed worker are retried.
    """
    if isinstance(error, TaskError | SpaceError):
        return True
    return user_objective and isinstance(error, ImportError)


def _restart_advice(task: TaskSpec, reason: str) -> str:
    """For a refusal by the data roots: the ``--data-root`` that holds ``task``'s dataset."""
    outside = reason.startswith("DataOutsideRoots: task.dataset ") and "is outside" in reason
    folder = dataset_folder(task.model_dump(mode="json")) if outside else None
    if folder is None:
        return ""  # the reason says what this worker lacks (a package, a root for the weights)
    return f" -- restart this worker with --data-root {folder}"


def _stopped_reason(signals: _Signals) -> str:
    return f"the worker was stopped ({signals.requested or 'interrupted'}); the trial is retried"


def run_worker(
    storage_url: str | None = None,
    *,
    study: str | None = None,
    objective: str | None = None,
    device: str | None = None,
    wait: bool = False,
    poll_seconds: float = 2.0,
    max_trials: int | None = None,
    checkpoint_dir: str | Path | None = None,
    gpu_name: str | None = None,
    artifacts: str | None = None,
    keep_artifacts: str | None = None,
    data_roots: Sequence[str] | None = None,
    gpu: str | None = None,
) -> int:
    """Pull and run trials from the study database until there is no budget left.

    With ``study``, serve that study until its budget is spent; without, serve every open
    hpsearch study (the least-served first), and with ``wait`` keep polling for new ones.
    ``objective`` (``package.module:function``) replaces the built-in trainer. With
    ``checkpoint_dir`` (a local or shared directory) trials save a checkpoint after every
    epoch, and a retried trial resumes from it. The worker records itself in the fleet table
    (``hpsearch.db.fleet``) while it runs, with ``gpu``, the GPU it is pinned to (as
    CUDA_VISIBLE_DEVICES names it). Returns the number of trials this worker ran.

    Reports: with the built-in trainer, each complete trial's validation predictions (and its
    final weights, for ``hpsearch export``) are kept
    in the artifact store ``artifacts`` (:func:`hpsearch.analysis.artifacts.open_artifact_store`: a
    directory or ``s3://bucket/prefix``; by default beside a SQLite study database, off for
    PostgreSQL) for the best ``keep_artifacts`` trials (``best:N``, default ``best:3``, or
    ``all``). A user ``objective`` gets no reports.

    The built-in trainer reads bundled datasets, and files only under ``data_roots`` (folders;
    default ``$HPSEARCH_DATA_ROOTS``, else none): see :mod:`hpsearch.data_roots`. Checkpoints
    go to ``checkpoint_dir/study-<id>/``, named by the study's id, never its name.
    """
    roots = DataRoots.from_options(data_roots)
    # A worker started beside the database (compose, a job array) may find it still starting.
    storage = open_storage_when_up(storage_url, within=get_settings().startup_retry_seconds)
    keep = parse_keep(keep_artifacts)
    store = None
    if objective is None:
        store = open_artifact_store(artifacts, storage_url=storage_url, create=True)
        if store is None:
            log.info(
                "reports are off: no artifact store for this study database; set "
                "HPSEARCH_ARTIFACTS (or --artifacts) to a directory every worker and reader "
                "can reach, or to s3://bucket/prefix, to keep the best trials' predictions"
            )
    worker = _Worker(
        storage,
        objective=load_objective(objective) if objective else None,
        device=device,
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        poll_seconds=poll_seconds,
        artifact_store=store,
        keep=keep,
        data_roots=roots,
    )
    if study is not None:  # fail now (StudyNotFound, a bad spec), not after a poll
        worker.named_study = study
        worker.join(study)
    worker.link.call(
        "registering the worker",
        fleet.register_worker,
        storage,
        worker.worker_id,
        device=device or "cpu",
        gpu_name=gpu_name,
        gpu=gpu,
    )
    worker.signals.install()
    ran = 0
    served: set[str] = set()  # the studies this worker ran a trial of
    log.info("worker %s serving %s", worker.worker_id, study or "every open study")
    if objective is None:
        log.info("worker %s reads data under: %s", worker.worker_id, roots.describe())
    try:
        while max_trials is None or ran < max_trials:
            worker.signals.check()
            name = study or worker.link.call("picking a study", worker.pick_study)
            if name is None:
                if not wait:
                    log.info("no study has budget left; exiting")
                    break
                worker.idle()
                continue
            try:
                current = worker.join(name)
                trial = worker.claim(current)
            except (StudyNotFound, KeyError, ValidationError):
                worker.joined.pop(name, None)
                if study is not None:
                    log.info("study %s was deleted; exiting", name)
                    break
                continue  # deleted between the pick and the claim
            if trial is None:
                counts = worker.link.call(
                    "counting trials", count_trials_by_state, storage, current.study_id
                )
                reason = worker._done(current.study_id, current.spec, counts)
                if reason is not None and study is not None:
                    worker.raise_if_failed({study})  # says why in one line, exits non-zero
                    log.info("study %s: %s", name, reason)
                    break
                worker.idle()  # running trials hold the rest of the budget
                continue
            started = time.perf_counter()
            outcome = worker.serve(current, trial)
            ran += 1
            worker.trials_run = ran  # the fleet row says so with the next claim, idle or exit
            served.add(name)
            if outcome.state in (TrialState.COMPLETE, TrialState.PRUNED):
                worker.note_prior_misfit(current)
            _log_outcome(name, trial.number, current.spec, outcome, time.perf_counter() - started)
            if outcome.worker_setup:  # this worker cannot run the study; others may
                line = worker.skip(current, trial, outcome)
                if study is not None:
                    raise WorkerCannotServe(line)  # one line, non-zero (hpsearch.cli)
                log.error("%s", line)
        worker.raise_if_failed({study} if study is not None else served)
    except WorkerStopped as e:
        log.info("worker %s stopped (%s)", worker.worker_id, e)
    finally:
        worker.signals.restore()
        with contextlib.suppress(Exception):
            fleet.retire_worker(storage, worker.worker_id, trials_run=ran)
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
    if outcome.traceback:
        log.warning("%s trial %d: your objective raised:\n%s", name, number, outcome.traceback)
