"""An Optuna storage for readers that reads each finished trial from the database once.

optuna-dashboard (and any reader of whole studies) asks for every trial of a study on each poll;
over Optuna's RDB storage that loads the whole study again: about a minute at 100,000 trials.
:class:`CachedStorage` wraps the RDB storage and keeps each study's trials in memory. A finished
trial never changes in Optuna, so every read only fetches what may have changed since the last,
as the study's :class:`~hpsearch.db.incremental.StudyCursor` finds it: new trials, trials that
were RUNNING or WAITING at the last read, trials hpsearch edited after they finished (the edit
marker, :func:`hpsearch.db.storage.mark_trials_edited`), and, when the count of trials up to the
largest id seen differs from the cache's (a trial committed out of id order by another process,
or trials deleted), the missing or gone ids.

Each read costs two small queries (three after a repair) plus the changed trials, so a read
that starts after a write committed sees it, whichever process or machine wrote it: several
service replicas over one database each keep their own cache and stay correct. A deleted study
is dropped; a study id reused for a new study (SQLite can) is told apart by its name and
direction, and a study that missed more edits than the marker lists is read anew.

Memory is bounded: at most ``max_trials`` trials are kept across studies
(``$HPSEARCH_CACHE_TRIALS``, default 300,000), the least recently read studies go first, and a
study bigger than the whole budget is read from the database each time, uncached. A trial of
the demo space (12 parameters, 10 intermediate values, its config) takes about 5 KB: 100,000
trials add about 530 MB to the process (``benchmarks/dashboard_latency.py``). Studies are read
with :func:`hpsearch.db.reads.load_trials` in chunks, so the peak stays near that too.
A study's first read fills the cache a chunk at a time; :meth:`CachedStorage.trials_so_far`
lets a reader that can show part of a study (the dashboard's study view,
:mod:`hpsearch.service.dashboard_detail`) take the first trials while the rest is read.
Writes go straight to the wrapped storage. Workers use the plain storage; this is for readers.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Container, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from hpsearch.db.incremental import StudyCursor, rank_key
from hpsearch.db.reads import load_trials
from hpsearch.settings import Settings, get_settings

__all__ = ["DEFAULT_MAX_TRIALS", "CacheInfo", "CachedStorage"]

log = logging.getLogger(__name__)

#: Trials kept in memory across studies unless ``$HPSEARCH_CACHE_TRIALS`` says otherwise.
DEFAULT_MAX_TRIALS: int = Settings.model_fields["cache_trials"].default

#: Trials per step of a study's first read, after each of which readers see it grow.
_FILL_CHUNK = 2000

#: What the cursor reads of a changed trial: its id (the cache then loads the trials whole).
_IDS = "SELECT t.trial_id FROM trials t"


@dataclass(frozen=True)
class CacheInfo:
    """What the cache holds now, and how reads went since it was made."""

    studies: int
    trials: int
    max_trials: int
    hits: int  # reads answered from memory plus the changed rows
    full_loads: int  # studies read whole (first read, reused id, missed edits)
    repairs: int  # reads that found trials committed out of id order, or deleted


@dataclass
class _Study:
    cursor: StudyCursor
    trials: dict[int, FrozenTrial] = field(default_factory=dict)  # by trial id
    by_number: list[FrozenTrial] | None = None  # sorted by number; rebuilt after changes
    best_id: int | None = None
    best_stale: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set once the first read is over: loaded, or given up (too big for the cache, or failed).
    loaded: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)  # its first chunk is in
    usable: bool = False  # loaded whole and kept in the cache
    failed: bool = False  # the first read raised

    def prefix(self) -> list[FrozenTrial]:
        """The trials numbered 0, 1, 2, ... without a gap, of those read so far."""
        ordered = self.ordered()
        n = 0
        while n < len(ordered) and ordered[n].number == n:
            n += 1
        return ordered[:n]

    def put(self, trials: Sequence[FrozenTrial]) -> None:
        for trial in trials:
            old = self.trials.get(trial._trial_id)
            self.trials[trial._trial_id] = trial
            self.cursor.saw(trial._trial_id, trial.state)
            if old is None or old.number != trial.number:
                self.by_number = None
            elif self.by_number is not None:
                # Same number: swap the object in place, no re-sort.
                self.by_number[self._position(trial.number)] = trial
            if trial.state == TrialState.COMPLETE:
                self.best_stale = True  # cheap to recompute lazily, once per read

    def _position(self, number: int) -> int:
        assert self.by_number is not None
        # Numbers are dense from 0 in Optuna; fall back to a search when a gap exists.
        if number < len(self.by_number) and self.by_number[number].number == number:
            return number
        return next(i for i, t in enumerate(self.by_number) if t.number == number)

    def drop(self, trial_ids: Collection[int]) -> None:
        for trial_id in trial_ids:
            self.trials.pop(trial_id, None)
        self.cursor.forget(trial_ids)
        self.by_number = None
        self.best_stale = True

    def ordered(self) -> list[FrozenTrial]:
        if self.by_number is None:
            self.by_number = sorted(self.trials.values(), key=lambda t: t.number)
        return self.by_number

    def best(self, direction: StudyDirection) -> FrozenTrial | None:
        if self.best_stale:
            complete = [
                (t.value, t.number, t._trial_id)
                for t in self.trials.values()
                if t.state == TrialState.COMPLETE and t.value is not None
            ]
            best = min(complete, key=lambda c: rank_key(c[0], c[1], direction), default=None)
            self.best_id = None if best is None else best[2]
            self.best_stale = False
        return None if self.best_id is None else self.trials[self.best_id]


class CachedStorage(optuna.storages.BaseStorage):
    """``backend`` (Optuna's RDB storage) with every study's trials kept in memory for reads.

    Reads of trials (:meth:`get_all_trials`, :meth:`get_n_trials`, :meth:`get_best_trial`)
    refresh the study from the database first and fetch only what may have changed; everything
    else, writes included, goes to ``backend``. Thread-safe. Attributes the backend has and
    this class does not (``engine``, ...) are the backend's, so hpsearch's SQL helpers accept
    either.
    """

    def __init__(
        self, backend: optuna.storages.RDBStorage, *, max_trials: int | None = None
    ) -> None:
        self._backend = backend
        if max_trials is None:
            max_trials = get_settings().cache_trials
        if max_trials < 0:
            raise ValueError(f"max_trials must be 0 or more, got {max_trials}")
        self.max_trials = max_trials
        self._studies: OrderedDict[int, _Study] = OrderedDict()  # least recently read first
        self._lock = threading.Lock()
        self._hits = self._full_loads = self._repairs = 0
        self._too_big_logged: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes this class lacks: engine, scoped_session, url, ...
        return getattr(self._backend, name)

    @property
    def backend(self) -> optuna.storages.RDBStorage:
        """The wrapped storage."""
        return self._backend

    def cache_info(self) -> CacheInfo:
        """How many studies and trials are cached, and how reads went."""
        with self._lock:
            return CacheInfo(
                studies=len(self._studies),
                trials=sum(len(s.trials) for s in self._studies.values()),
                max_trials=self.max_trials,
                hits=self._hits,
                full_loads=self._full_loads,
                repairs=self._repairs,
            )

    def too_big(self, study_id: int) -> bool:
        """Whether the study was found bigger than the cache (it is read uncached)."""
        return study_id in self._too_big_logged

    def holds(self, study_id: int) -> bool:
        """Whether the study's trials are in the cache now (or being read into it)."""
        with self._lock:
            return study_id in self._studies

    # -- reads of trials, from the cache -------------------------------------------------

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        trials = self._read(study_id, lambda study: list(study.ordered()))
        if trials is None:  # too big for the cache
            return self._backend.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        directions = self.get_study_directions(study_id)
        if len(directions) > 1:
            raise RuntimeError("Best trial can be obtained only for single-objective optimization.")
        best = self._read(study_id, lambda study: (study.best(directions[0]),))
        if best is None:
            return self._backend.get_best_trial(study_id)
        if best[0] is None:
            raise ValueError("No trials are completed yet.")
        return best[0]

    def trials_so_far(self, study_id: int, *, wait: float) -> tuple[list[FrozenTrial], bool]:
        """The study's trials and True, as :meth:`get_all_trials` gives them; or, while the
        study's first read is still going after ``wait`` seconds (and its first chunk is in),
        the trials read so far that are numbered 0, 1, 2, ... without a gap, and False.

        A first read started here goes on in the background, so that a caller can show a big
        study while the rest is read (at 100,000 trials the first read takes about 8 s)."""
        study, mine = self._entry(study_id)
        if mine:
            reader = threading.Thread(
                target=self._fill_quietly, args=(study_id, study), name="cache-fill", daemon=True
            )
            try:
                reader.start()
            except BaseException:  # no thread to be had: nobody would ever fill the entry
                self._forget(study_id, study)
                study.failed = True
                study.started.set()
                study.loaded.set()
                raise
        study.started.wait()  # the first few thousand trials at least (0.2 s)
        if not study.loaded.wait(wait):
            with study.lock:
                return list(study.prefix()), False
        return self.get_all_trials(study_id, deepcopy=False), True

    def _entry(self, study_id: int) -> tuple[_Study, bool]:
        """The study's cache entry, and whether the caller made it (and must fill it)."""
        with self._lock:
            study = self._studies.get(study_id)
            if study is not None:
                self._studies.move_to_end(study_id)
                return study, False
            study = self._studies[study_id] = _Study(cursor=StudyCursor(study_id=study_id))
            return study, True

    def _forget(self, study_id: int, study: _Study) -> None:
        with self._lock:
            if self._studies.get(study_id) is study:
                del self._studies[study_id]

    def _read(self, study_id: int, answer: Callable[[_Study], Any]) -> Any:
        """``answer(study)`` on the refreshed study, or None when it is too big to cache."""
        while True:
            study, mine = self._entry(study_id)
            if mine:
                if not self._fill(study_id, study):
                    return None
                with study.lock:
                    return answer(study)
            study.loaded.wait()  # another thread's first read of it
            if not study.usable:
                if study.failed:
                    continue  # that read failed: read again here (and raise its error)
                return None
            with study.lock:
                if self._refresh(study_id, study):
                    return answer(study)
            self._forget(study_id, study)  # gone, or the id names another study now

    def _fill_quietly(self, study_id: int, study: _Study) -> None:
        try:
            self._fill(study_id, study)
        except Exception as e:  # noqa: BLE001 - a background read: the next read raises it
            log.debug("reading study %d into the cache failed: %s", study_id, e)

    def _fill(self, study_id: int, study: _Study) -> bool:
        """Read the whole study into its new entry, a chunk at a time (readers of
        :meth:`trials_so_far` see it grow), or drop the entry and return False when the study
        is bigger than the cache."""
        try:
            with self._backend.engine.connect() as conn:
                # KeyError when there is no such study; a first read never has to start over.
                changes = study.cursor.read(conn, select=_IDS, held=0)
            assert changes is not None
            ids = sorted(r[0] for r in changes.rows)  # ids grow with numbers, nearly always
            if len(ids) > self.max_trials:
                if study_id not in self._too_big_logged:
                    self._too_big_logged.add(study_id)
                    log.warning(
                        "study %r has %d trials, more than the trial cache holds (%d, "
                        "$HPSEARCH_CACHE_TRIALS): it is read from the database on every request",
                        study.cursor.name,
                        len(ids),
                        self.max_trials,
                    )
                self._forget(study_id, study)
                return False
            # In chunks (reads.load_trials), not Optuna's one read of the whole study: the
            # peak memory of a read is a chunk's rows, not the study's.
            for start in range(0, len(ids), _FILL_CHUNK):
                trials = load_trials(self._backend, ids[start : start + _FILL_CHUNK])
                with study.lock:
                    study.put(trials)
                study.started.set()
            study.usable = True
            with self._lock:
                self._full_loads += 1
                self._evict(keep=study_id)
            return True
        except BaseException:
            study.failed = True
            self._forget(study_id, study)
            raise
        finally:
            study.started.set()
            study.loaded.set()

    def _refresh(self, study_id: int, study: _Study) -> bool:
        """Bring ``study`` up to date; False when the id no longer names the cached study, or
        the cache missed edits that it cannot tell apart any more."""
        try:
            with self._backend.engine.connect() as conn:
                changes = study.cursor.read(
                    conn, select=_IDS, held=len(study.trials), held_ids=study.trials.keys
                )
        except KeyError:  # the study is gone
            return False
        if changes is None:
            return False
        if changes.gone:
            study.drop(changes.gone)
        to_load = sorted(r[0] for r in changes.rows)
        if to_load:
            study.put(load_trials(self._backend, to_load))
        with self._lock:
            self._hits += 1
            self._repairs += changes.repaired
        return True

    def _evict(self, *, keep: int) -> None:
        total = sum(len(s.trials) for s in self._studies.values())
        for study_id in list(self._studies):
            if total <= self.max_trials:
                break
            # Not one still being read: its reader would read it again, whole, to answer.
            if study_id != keep and self._studies[study_id].loaded.is_set():
                total -= len(self._studies.pop(study_id).trials)

    # -- everything else: the backend ----------------------------------------------------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self._backend.create_new_study(directions, study_name=study_name)

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            self._studies.pop(study_id, None)
        self._backend.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._backend.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._backend.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._backend.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._backend.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._backend.get_all_studies()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._backend.create_new_trial(study_id, template_trial)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self._backend.set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._backend.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        return self._backend.set_trial_state_values(trial_id, state, values)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._backend.set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._backend.set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._backend.set_trial_system_attr(trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        # One trial costs a few indexed queries; reading it fresh keeps it exact.
        return self._backend.get_trial(trial_id)

    def remove_session(self) -> None:
        self._backend.remove_session()
