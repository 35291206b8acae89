"""optuna-dashboard's study view (``GET /api/studies/<id>``), answered fast for big studies.

The dashboard's own answer serializes every trial of the study on each first load (45 s at
100,000 trials: 8 s to read them, 20 s to make dicts of them, 8 s of ``json.dumps``, for
490 MB). This one answers the same JSON with two changes of cost, not of content:

- A finished trial's JSON is made once and kept (a finished trial never changes in Optuna; the
  trial cache, :class:`hpsearch.db.cache.CachedStorage`, hands out a new object for one that
  was edited, and the kept JSON goes with the object it was made from). A trial's note and the
  dashboard's own artifacts live in the study's attributes, so a trial that has either is
  serialized afresh on each answer.
- An answer takes about :data:`ANSWER_SECONDS`: a study still being read for the first time,
  or with trials not yet serialized, is answered with its first trials (0, 1, 2, ... without a
  gap) and the rest keeps being prepared in the background. The dashboard's page asks for the
  trials after those it has on its next poll (``?after=N``) and appends them, so a big study
  shows within seconds and fills in over a few polls. The best trial and the study's own fields
  (name, attributes, note) are the whole study's from the first answer on; the search spaces,
  the trials' attribute keys and ``has_intermediate_values`` are those of the trials the page
  has, and grow with them.

The kept JSON costs about as much memory as the cached trials themselves (490 MB at 100,000
trials of the demo space) and goes when the trial cache lets the study go. Studies of several
objectives and preferential studies are answered by the dashboard's own view (their best
trials are a front computed over all trials).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import bottle
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna_dashboard import _note
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects
from optuna_dashboard._inmemory_cache import get_cached_extra_study_property
from optuna_dashboard._serializer import serialize_frozen_trial, serialize_study_detail
from optuna_dashboard._storage import get_study
from optuna_dashboard.artifact._backend import DASHBOARD_ARTIFACTS_ATTR_PREFIX
from optuna_dashboard.preferential._study import _SYSTEM_ATTR_PREFERENTIAL_STUDY
from optuna_dashboard.preferential._system_attrs import get_skipped_trial_ids

from hpsearch.db.cache import CachedStorage
from hpsearch.db.queries import best_trial_id
from hpsearch.db.reads import load_trials

__all__ = ["ANSWER_SECONDS", "StudyDetails", "install_study_details"]

log = logging.getLogger(__name__)

#: About how long one answer may take before it is cut short (the rest on the next poll).
ANSWER_SECONDS = 2.0

_ROUTE = "/api/studies/<study_id:int>"
#: Stands for the trials array in the answer's JSON; no study's name or attribute holds it.
_PLACEHOLDER = f"__hpsearch_trials_{uuid.uuid4().hex}__"


class StudyDetails:
    """The study view over ``storage``, with each finished trial's JSON kept."""

    def __init__(
        self,
        storage: CachedStorage,
        app: bottle.Bottle,
        *,
        answer_seconds: float = ANSWER_SECONDS,
    ) -> None:
        self.storage = storage
        self.app = app
        self.answer_seconds = answer_seconds
        self._kept: dict[int, dict[int, tuple[FrozenTrial, str]]] = {}  # study -> trial id ->
        self._lock = threading.Lock()
        self._warming: set[int] = set()

    # ---- the answer ---------------------------------------------------------------------

    def answer(self, study_id: int, after: int) -> str | None:
        """The view's JSON, or None for a study the dashboard's own view answers."""
        deadline = time.monotonic() + self.answer_seconds
        study = get_study(self.storage, study_id)
        if study is None:
            raise KeyError(study_id)
        attrs = study.system_attrs
        if len(study.directions) != 1 or attrs.get(_SYSTEM_ATTR_PREFERENTIAL_STUDY, False):
            return None
        if self.storage.too_big(study_id):
            return None  # read uncached on every request: nothing to keep, nothing to cut
        trials, whole = self.storage.trials_so_far(study_id, wait=self.answer_seconds / 2)
        if whole and not self.storage.holds(study_id):
            return None
        best = self._best(study_id, whole, study.directions[0])
        parts = self._trial_json(study_id, trials[after:], attrs, deadline)
        if len(parts) < len(trials) - after or not whole:
            self._warm(study_id)
        trials = trials[: after + len(parts)]  # what the page will have after this answer
        # The dashboard's per-study property cache walks new trials only; the trials it gets
        # grow from the front, as it expects.
        intersection, union, user_attrs, has_steps = get_cached_extra_study_property(
            self.app._inmemory_cache,
            study_id,
            trials,
        )
        skipped_ids = get_skipped_trial_ids(attrs)
        body = serialize_study_detail(
            study,
            best,
            [],
            intersection,
            union,
            user_attrs,
            has_steps,
            get_plotly_graph_objects(attrs),
            [t.number for t in trials if t._trial_id in skipped_ids],
        )
        body["trials"] = _PLACEHOLDER
        text = json.dumps(body)
        return text.replace(json.dumps(_PLACEHOLDER), "[" + ", ".join(parts) + "]", 1)

    def _best(self, study_id: int, whole: bool, direction: StudyDirection) -> list[FrozenTrial]:
        if whole:
            try:
                return [self.storage.get_best_trial(study_id)]
            except ValueError:  # no complete trial yet
                return []
        # Not all read yet: the best trial by one query over the whole study, then that trial.
        best = best_trial_id(self.storage.backend, study_id, direction)
        return [] if best is None else load_trials(self.storage.backend, [best])

    def _trial_json(
        self,
        study_id: int,
        trials: list[FrozenTrial],
        attrs: dict[str, Any],
        deadline: float,
    ) -> list[str]:
        """The JSON of ``trials``, in order, as far as the deadline allows (at least one)."""
        with self._lock:
            kept = self._kept.setdefault(study_id, {})
            for other in [s for s in self._kept if s != study_id]:
                if not self.storage.holds(other):  # the trial cache let it go: so does this
                    del self._kept[other]
        artifacts = _artifact_trials(attrs)
        parts: list[str] = []
        for i, trial in enumerate(trials):
            if i and i % 500 == 0 and time.monotonic() > deadline:
                break
            trial_id = trial._trial_id
            if trial_id in artifacts or _note.note_ver_key(trial_id) in attrs:
                # Its note or artifacts are in the study's attributes: never kept.
                parts.append(json.dumps(serialize_frozen_trial(study_id, trial, attrs)))
                continue
            held = kept.get(trial._trial_id)
            if held is not None and held[0] is trial:
                parts.append(held[1])
                continue
            text = json.dumps(serialize_frozen_trial(study_id, trial, {}))
            if trial.state.is_finished():
                kept[trial._trial_id] = (trial, text)
            parts.append(text)
        return parts

    # ---- preparing the rest in the background -------------------------------------------

    def _warm(self, study_id: int) -> None:
        with self._lock:
            if study_id in self._warming:
                return
            self._warming.add(study_id)
        threading.Thread(
            target=self._warm_now, args=(study_id,), name="dashboard-warm", daemon=True
        ).start()

    def _warm_now(self, study_id: int) -> None:
        try:
            while True:
                trials, whole = self.storage.trials_so_far(study_id, wait=1.0)
                done = [t for t in trials if t.state.is_finished()]
                self._trial_json(study_id, done, {}, deadline=float("inf"))
                # And the search spaces over them, which the answers would otherwise walk.
                get_cached_extra_study_property(self.app._inmemory_cache, study_id, trials)
                if whole:
                    break
        except Exception as e:  # noqa: BLE001 - only a head start: the answers do the rest
            log.debug("preparing study %d for the dashboard failed: %s", study_id, e)
        finally:
            with self._lock:
                self._warming.discard(study_id)
                kept = self._kept.get(study_id)
            if kept is not None:
                self._forget_gone(study_id, kept)

    def _forget_gone(self, study_id: int, kept: dict[int, tuple[FrozenTrial, str]]) -> None:
        # Trials deleted, or re-read by the trial cache (a new object), since they were kept.
        try:
            live = {t._trial_id: t for t in self.storage.get_all_trials(study_id, deepcopy=False)}
        except KeyError:  # the study is gone
            with self._lock:
                self._kept.pop(study_id, None)
            return
        for trial_id, (trial, _) in list(kept.items()):
            if live.get(trial_id) is not trial:
                kept.pop(trial_id, None)


def _artifact_trials(attrs: dict[str, Any]) -> set[int]:
    """Ids of the trials with a dashboard artifact (kept in the study's attributes)."""
    ids: set[int] = set()
    for key in attrs:
        if key.startswith(DASHBOARD_ARTIFACTS_ATTR_PREFIX):
            head = key[len(DASHBOARD_ARTIFACTS_ATTR_PREFIX) :].split(":", 1)[0]
            if head.isdigit():
                ids.add(int(head))
    return ids


def install_study_details(app: bottle.Bottle, storage: CachedStorage) -> StudyDetails:
    """Answer ``app``'s (optuna-dashboard's) study view with :class:`StudyDetails`; the
    dashboard's own view still answers what this one does not."""
    own = next(r.callback for r in app.routes if r.rule == _ROUTE and r.method == "GET")
    details = StudyDetails(storage, app, answer_seconds=ANSWER_SECONDS)

    def study_detail(study_id: int) -> Any:
        try:
            after = int(bottle.request.params.get("after", 0))
        except ValueError:
            after = -1
        if after < 0:
            bottle.response.status = 400
            return {"reason": "`after` should be larger or equal 0."}
        try:
            text = details.answer(study_id, after)
        except KeyError:
            bottle.response.status = 404
            return {"reason": f"study_id={study_id} is not found"}
        if text is None:
            return own(study_id)
        bottle.response.content_type = "application/json"
        return text

    app.route(_ROUTE, "GET", study_detail)
    return details
