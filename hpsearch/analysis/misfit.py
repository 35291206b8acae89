"""Prior misfit, told to the user: where a study's evidence disagrees with the checklist's tiers.

:func:`hpsearch.strategy.prior_misfit` compares PED-ANOVA importance on a study's finished
trials with the checklist's impact tiers. This module is how people see the answer:

- :func:`check_prior` reads a study's finished trials up to the latest checkpoint (15, 25, ...
  finished trials: :func:`evidence_point`; at most the latest :data:`EVIDENCE_CAP` of them)
  from the database and says what the evidence says of the checklist (:class:`PriorCheck`): a
  misfit with its numbers, agreement, or too few trials yet. It is cached per study and
  checkpoint in the process, so a status read costs a computation once per checkpoint.
- The study status (``GET /studies/{name}``, ``hpsearch status NAME``) carries the misfit
  (:class:`PriorMisfit`, or null), the error-analysis report a "Prior misfit" section.
- :func:`update_misfit_note` writes it into the study's note on the Optuna dashboard, in a
  section of its own between :data:`NOTE_START` and :data:`NOTE_END`; whatever else the note
  says is the user's and is kept. Workers call it (reads never write): :func:`note_due` says
  after which trial.

Only studies whose strategy uses the checklist (:data:`MISFIT_STRATEGIES`) are checked.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, Field

from hpsearch.spaces import SearchSpace
from hpsearch.db.queries import count_trials_by_state, page_trial_ids
from hpsearch.strategy import prior_misfit
from hpsearch.db.reads import load_trials
from hpsearch.db.storage import study_lock

if TYPE_CHECKING:
    from hpsearch.studies import StudySpec

__all__ = [
    "EVIDENCE_CAP",
    "MIN_TRIALS",
    "MISFIT_STRATEGIES",
    "NOTE_END",
    "NOTE_START",
    "PriorCheck",
    "PriorMisfit",
    "RankedKnob",
    "check_prior",
    "evidence_point",
    "note_due",
    "note_section",
    "replace_section",
    "spec_prior_check",
    "store_prior_check",
    "claim_checkpoint",
    "study_prior_check",
    "update_misfit_note",
]

log = logging.getLogger(__name__)

#: Finished trials the importance is computed on, at most: the latest ones.
EVIDENCE_CAP = 300
#: Finished trials before the evidence is compared with the checklist.
MIN_TRIALS = 15
#: Strategies whose search follows the checklist's tiers: only their studies are checked.
MISFIT_STRATEGIES = frozenset({"impact", "tiers"})
#: The lines that open and close hpsearch's section of a study's dashboard note: empty
#: Markdown link definitions, which the dashboard does not show (an HTML comment it would).
NOTE_START = "[//]: # (hpsearch prior misfit: hpsearch rewrites this section)"
NOTE_END = "[//]: # (end of the hpsearch prior misfit section)"

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_CACHE_SIZE = 256
_cache: OrderedDict[tuple[Any, ...], PriorCheck] = OrderedDict()
_cache_lock = threading.Lock()


class RankedKnob(BaseModel):
    """One knob of a study's evidence: its share of the importance and its checklist tier."""

    param: str
    importance: float = Field(description="Share of the PED-ANOVA importance (shares sum to 1).")
    tier: str = Field(description="The checklist's impact tier: high, medium or low.")


class PriorMisfit(BaseModel):
    """The study's evidence disagrees with the checklist: which knob each ranks first."""

    message: str = Field(description="One line for a person, with the numbers.")
    checklist_top: str = Field(description="The knob of the highest tier the evidence ranks first.")
    evidence_top: str = Field(description="The knob the evidence ranks first.")
    ranking: list[RankedKnob] = Field(description="Every knob, most important first.")
    trials_used: int = Field(description="Finished trials the importance was computed on.")


class PriorCheck(BaseModel):
    """What a study's evidence says of the checklist's tiers.

    ``verdict`` is ``misfit`` (``misfit`` says where, with the numbers), ``agrees`` (no knob of
    a lower tier ranks first), ``too_few`` (fewer than :data:`MIN_TRIALS` finished trials) or
    ``unknown`` (a study with several objectives). ``line`` says it in one line. The evidence
    is that of the latest checkpoint (:func:`evidence_point`): ``trials_used`` finished
    trials, of the ``finished`` the study had when it was checked.
    """

    verdict: Literal["misfit", "agrees", "too_few", "unknown"]
    line: str
    finished: int
    trials_used: int = 0
    ranking: list[RankedKnob] = Field(default_factory=list)
    misfit: PriorMisfit | None = None


# ---- the check --------------------------------------------------------------------------


def evidence_point(finished: int) -> int | None:
    """How many finished trials the check is made on: the latest of 15, 25, 35, ..., 95, then
    of every 50 (100, 150, ...) that is at most ``finished``; None below 15.

    Checking at checkpoints, not after every trial, keeps reads cheap (the importance is
    computed once per checkpoint and process) and makes the status, the report and the note
    say the same thing; the sampler re-ranks its knobs at the same pace.
    """
    if finished < MIN_TRIALS:
        return None
    if finished < 100:
        return MIN_TRIALS + (finished - MIN_TRIALS) // 10 * 10
    return finished // 50 * 50


def check_prior(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    *,
    name: str,
    space: SearchSpace,
    finished: int | None = None,
) -> PriorCheck:
    """Compare the study's finished trials with ``space``'s tiers, at the latest checkpoint.

    The evidence is the first :func:`evidence_point` finished trials (complete and pruned, by
    trial number), the latest :data:`EVIDENCE_CAP` of them at most. ``finished`` is the
    study's count of finished trials when the caller has it (one query otherwise). The answer
    is cached per study and checkpoint in this process.
    """
    if finished is None and isinstance(storage, optuna.storages.RDBStorage):
        counts = count_trials_by_state(storage, study_id)
        finished = sum(counts[s] for s in _FINISHED)
    elif finished is None:  # not a database (an in-memory study)
        finished = len(storage.get_all_trials(study_id, deepcopy=False, states=_FINISHED))
    point = evidence_point(finished)
    if point is None:
        return PriorCheck(
            verdict="too_few",
            line=(
                f"too few finished trials yet to check the checklist against this study "
                f"({finished} of the {MIN_TRIALS} needed)"
            ),
            finished=finished,
        )
    key = (_storage_key(storage), study_id, name, point, space.name, len(space.params))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached.model_copy(update={"finished": finished})
    check = _compute(storage, study_id, name, space, point)
    with _cache_lock:
        _cache[key] = check
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return check.model_copy(update={"finished": finished})


#: The study system attribute that holds the latest check a worker made (a PriorCheck).
STORED_ATTR = "hpsearch:prior_check"


def store_prior_check(
    storage: optuna.storages.BaseStorage, study_id: int, check: PriorCheck
) -> None:
    """Keep ``check`` with the study, for reads: a worker computes it at each checkpoint, so a
    status read or a report never pays for PED-ANOVA itself."""
    storage.set_study_system_attr(study_id, STORED_ATTR, check.model_dump(mode="json"))


#: The study system attribute that says which checkpoint a worker is checking (or checked).
CLAIMED_ATTR = "hpsearch:prior_check_at"


def claim_checkpoint(storage: optuna.storages.RDBStorage, study_id: int, point: int) -> bool:
    """Whether this worker is the one to check the study at checkpoint ``point``
    (:func:`evidence_point`): True once per checkpoint across the study's workers, under the
    study lock, so that they do not all compute the same check at once."""

    def claimed() -> bool:
        at = storage.get_study_system_attrs(study_id).get(CLAIMED_ATTR, 0)
        return isinstance(at, int) and at >= point

    if claimed():  # the usual answer, without waiting for the lock the study's claims take
        return False
    with study_lock(storage, study_id):
        if claimed():
            return False
        storage.set_study_system_attr(study_id, CLAIMED_ATTR, point)
    return True


def spec_prior_check(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    spec: StudySpec,
    *,
    finished: int | None = None,
    system_attrs: Mapping[str, Any] | None = None,
) -> PriorCheck | None:
    """The check of a study of ``spec``: the one its workers stored at the latest checkpoint
    (:func:`store_prior_check`), else :func:`check_prior` computed here; None when its strategy
    does not use the checklist (``tpe``, ``random``, ...). A failure to compute is logged and
    gives None: the check never breaks the read it is part of. ``system_attrs`` are the
    study's system attributes when the caller has read them (one query otherwise)."""
    if spec.strategy not in MISFIT_STRATEGIES or spec.name is None:
        return None
    if system_attrs is None:
        system_attrs = storage.get_study_system_attrs(study_id)
    stored = system_attrs.get(STORED_ATTR)
    if stored is not None:
        try:
            check = PriorCheck.model_validate(stored)
        except ValueError:
            check = None
        if check is not None:
            if finished is not None:
                check = check.model_copy(update={"finished": finished})
            return check
    try:
        return check_prior(
            storage, study_id, name=spec.name, space=spec.search_space, finished=finished
        )
    except Exception as e:  # noqa: BLE001 - the status or report without this line, not a 500
        log.warning("study %s: could not check the checklist against its trials: %s", spec.name, e)
        return None


def study_prior_check(storage: optuna.storages.BaseStorage, name: str) -> PriorCheck | None:
    """:func:`spec_prior_check` for the study ``name``; None for a study hpsearch did not create
    (it has no spec, so no checklist) or whose strategy does not use the checklist."""
    from hpsearch import studies  # studies imports this module for its status

    try:
        spec = studies.load_spec(storage, name)
        study_id = storage.get_study_id_from_name(name)
    except Exception:  # noqa: BLE001 - not an hpsearch study, or a spec this version cannot read
        return None
    return spec_prior_check(storage, study_id, spec)


def _compute(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    name: str,
    space: SearchSpace,
    point: int,
) -> PriorCheck:
    directions = storage.get_study_directions(study_id)
    if len(directions) != 1:
        return PriorCheck(
            verdict="unknown",
            line="the checklist is not checked against a study with several objectives",
            finished=point,
        )
    trials = _evidence_trials(storage, study_id, point)
    # A study of its own in memory: prior_misfit reads its trials through Optuna's Study API.
    memory = optuna.storages.InMemoryStorage()
    with _quiet_optuna():
        memory.create_new_study(directions, study_name=name)
        evidence = optuna.Study(study_name=name, storage=memory)
        evidence.add_trials(trials)
        misfits = prior_misfit(evidence, space, min_trials=MIN_TRIALS)
    used = len(trials)
    if not misfits:
        return PriorCheck(
            verdict="agrees",
            line=(
                f"the evidence agrees with the checklist: on {used} finished trials no knob of a "
                "lower impact tier ranks first"
            ),
            finished=point,
            trials_used=used,
        )
    found = misfits[0]
    message = found.message
    if used < point:  # say which trials: not the study's first ones
        message = message.replace(
            f"this study's {used} finished trials",
            f"the latest {used} of this study's first {point} finished trials",
        )
    ranking = [RankedKnob(param=k, importance=v, tier=t) for k, v, t in found.ranking]
    return PriorCheck(
        verdict="misfit",
        line=message,
        finished=point,
        trials_used=used,
        ranking=ranking,
        misfit=PriorMisfit(
            message=message,
            checklist_top=found.checklist_top,
            evidence_top=found.evidence_top,
            ranking=ranking,
            trials_used=used,
        ),
    )


def _evidence_trials(
    storage: optuna.storages.BaseStorage, study_id: int, point: int
) -> list[FrozenTrial]:
    """The latest :data:`EVIDENCE_CAP` of the study's first ``point`` finished trials."""
    offset, limit = max(0, point - EVIDENCE_CAP), min(point, EVIDENCE_CAP)
    if not isinstance(storage, optuna.storages.RDBStorage):  # not a database (an in-memory study)
        done = storage.get_all_trials(study_id, deepcopy=False, states=_FINISHED)
        return sorted(done, key=lambda t: t.number)[offset : offset + limit]
    ids, _ = page_trial_ids(storage, study_id, offset=offset, limit=limit, states=_FINISHED)
    return load_trials(storage, ids)


def _storage_key(storage: optuna.storages.BaseStorage) -> Any:
    url = getattr(storage, "url", None)
    return str(url) if url is not None else id(storage)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines about the scratch studies made here are noise to a reader."""
    level = optuna.logging.get_verbosity()
    if level < optuna.logging.WARNING:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        if level < optuna.logging.WARNING:
            optuna.logging.set_verbosity(level)


# ---- the dashboard note -----------------------------------------------------------------


def note_due(finished: int, last: int) -> int | None:
    """The checkpoint (:func:`evidence_point`) a worker should write the note at, or None when
    it is not above ``last``, the checkpoint this worker handled last (0 for none)."""
    point = evidence_point(finished)
    return point if point is not None and point > last else None


def note_section(check: PriorCheck) -> str:
    """hpsearch's section of the study note: the verdict and the ranking, as Markdown."""
    line = check.line[:1].upper() + check.line[1:]
    lines = [NOTE_START, "", "### Prior misfit (written by hpsearch)", "", line, ""]
    if check.ranking:
        lines += ["| knob | importance | checklist tier |", "|---|---:|---|"]
        lines += [f"| {r.param} | {r.importance:.2f} | {r.tier} |" for r in check.ranking]
        lines += ["", f"Shares of the PED-ANOVA importance on {check.trials_used} finished trials."]
    lines += [
        "",
        "*hpsearch rewrites this section as trials finish: write your notes above or below it.*",
        "",
        NOTE_END,
    ]
    return "\n".join(lines)


def replace_section(body: str, section: str) -> str:
    """``body`` with hpsearch's section replaced by ``section`` (appended when it has none)."""
    start = body.find(NOTE_START)
    if start < 0:
        return f"{body.rstrip()}\n\n{section}\n" if body.strip() else f"{section}\n"
    end = body.find(NOTE_END, start)
    tail = "" if end < 0 else body[end + len(NOTE_END) :]
    return body[:start] + section + tail


def update_misfit_note(study: optuna.Study, check: PriorCheck) -> bool:
    """Write ``check`` into the study's dashboard note; whether the note changed.

    A misfit is written in hpsearch's section (added after the user's text, or replacing the
    section written before); agreement only replaces a section written before (a study whose
    evidence always agreed gets no note). The note is saved only when the section changed.
    """
    import optuna_dashboard  # the note format is the dashboard's own

    body = optuna_dashboard.get_note(study)
    had_section = NOTE_START in body
    if check.verdict != "misfit" and not had_section:
        return False
    new = replace_section(body, note_section(check))
    if new == body:
        return False
    optuna_dashboard.save_note(study, new)
    return True
