"""Parameter importance of a study, beside the checklist's impact tiers.

Optuna's importance evaluators say which parameters mattered in the trials that ran; the
checklist said beforehand which should (each parameter's ``impact`` tier). A report puts the two
side by side, parameter by parameter, with a verdict on whether they agree.

The verdict compares thirds. Rank the n evaluated parameters by importance (1 = most
important) and cut the ranking into thirds: ``ceil(n/3)`` at each end, the middle takes the
rest. A parameter with less than an equal share of the importance (``1/n``) is never in the top
third (it goes to the middle): a near-zero importance ranked high among other near-zero ones is
noise, not a finding. The checklist expects high-tier parameters in the top third, medium in
the middle, low in the bottom. Same third: "agrees". Above its tier's third: "matters more than
the checklist says"; below it: "matters less than the checklist says".
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any, Literal, TypeGuard

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, Field

from hpsearch.errors import NotEnoughTrials, UsageError
from hpsearch.db.queries import count_trials_by_state
from hpsearch.strategy.prior import TrialsView
from hpsearch.studies import StudySpec, load_spec

__all__ = [
    "EVALUATORS",
    "FANOVA_DEPTH",
    "FANOVA_MAX_TRIALS",
    "FANOVA_TREES",
    "PED_ANOVA_MAX_TRIALS",
    "VERDICT_RULE",
    "ImportanceReport",
    "ImportanceRow",
    "parameter_importance",
]

#: The evaluators a report can use; the first is the default.
EVALUATORS = ("ped_anova", "fanova")
#: fANOVA's cost grows with trials, trees and depth: it sees only the latest this many trials.
FANOVA_MAX_TRIALS = 2000
#: The forest of fANOVA. Optuna's defaults (64 trees, depth 64) took 2 minutes on 2,000 trials
#: of the demo space here; 32 trees of depth 8 take about 2 seconds and rank the same.
FANOVA_TREES = 32
FANOVA_DEPTH = 8
#: PED-ANOVA is linear in trials, but reading and rating 80,000 took 4.5 s: beyond this many
#: complete trials it rates a fixed sample of about this many (:data:`_SAMPLE_SQL`).
PED_ANOVA_MAX_TRIALS = 10_000

Evaluator = Literal["ped_anova", "fanova"]
Verdict = Literal[
    "agrees",
    "matters more than the checklist says",
    "matters less than the checklist says",
    "not ranked",
]

VERDICT_RULE = (
    "The n evaluated parameters are ranked by importance and the ranking is cut into thirds "
    "(ceil(n/3) at each end); a parameter below an equal share (1/n) is never in the top third. "
    "The checklist expects high-tier parameters in the top third, medium in the middle, low in "
    "the bottom: the same third agrees; a higher third matters more than the checklist says, a "
    "lower one less."
)

_TIER_THIRD = {"high": 0, "medium": 1, "low": 2}
Third = Literal["top", "middle", "bottom"]
_THIRD_NAMES: tuple[Third, Third, Third] = ("top", "middle", "bottom")


class ImportanceRow(BaseModel):
    """One parameter: its observed importance and rank beside its checklist tier and row."""

    param: str
    importance: float | None = Field(
        description="Normalized importance (the evaluated parameters sum to 1); None when the "
        "parameter was not evaluated (see `reason`)."
    )
    rank: int | None = Field(description="1 = most important; None when not evaluated.")
    third: Third | None
    impact: Literal["high", "medium", "low"] | None = Field(
        description="The checklist tier from the study's space; None for a parameter the "
        "space does not define."
    )
    checklist: list[str] = Field(description="The checklist row(s) the parameter realizes.")
    present_in: int = Field(description="How many of the used trials have this parameter.")
    verdict: Verdict
    agrees: bool | None = Field(description="Whether rank and tier agree; None when not ranked.")
    reason: str | None = Field(
        default=None, description="Why a parameter has no importance, or a caveat on it."
    )


class ImportanceReport(BaseModel):
    """Which parameters mattered in a study's trials, beside what the checklist expected."""

    study: str
    evaluator: Evaluator
    metric: str
    direction: str
    seed: int | None = Field(description="The evaluator's seed (fANOVA's forest); PED-ANOVA "
                             "is deterministic and has none.")  # fmt: skip
    trials_used: int = Field(description="Complete trials with a finite value that were used.")
    trials_note: str = Field(description="Which trials were used, and which were not and why.")
    rows: list[ImportanceRow] = Field(
        description="Evaluated parameters by rank, then the parameters without an importance."
    )
    verdict_rule: str = VERDICT_RULE
    notes: list[str] = Field(
        default_factory=list, description="Warnings of the evaluator (few trials, ties)."
    )


def _rows_of(checklist: str | list[str] | None) -> list[str]:
    if checklist is None:  # a parameter of a user's own space may name no row
        return []
    return [checklist] if isinstance(checklist, str) else list(checklist)


def _third(rank: int, n: int, importance: float) -> int:
    end = math.ceil(n / 3)
    if rank <= end:
        return 0 if importance >= 1 / n else 1
    if rank > n - end:
        return 2
    return 1


def _verdict(impact: str | None, third: int) -> tuple[Verdict, bool | None]:
    if impact is None:
        return "not ranked", None
    expected = _TIER_THIRD[impact]
    if third == expected:
        return "agrees", True
    if third < expected:
        return "matters more than the checklist says", False
    return "matters less than the checklist says", False


#: A fixed sample of a study's trials, spread over its whole history: trial numbers scrambled by
#: a multiplication modulo a prime, kept below ``:below`` (of ``_SAMPLE_MODULUS``). The same
#: trials are in it at every read, so a report changes only as trials are added.
_SAMPLE_MODULUS = 10007
_SAMPLE_SQL = f" AND (t.number * 7919) % {_SAMPLE_MODULUS} < :below"
_VALUES_SQL = (
    "SELECT t.trial_id, t.number, v.value FROM trials t "
    "JOIN trial_values v ON v.trial_id = t.trial_id "
    "WHERE t.study_id = :study_id AND t.state = 'COMPLETE' AND v.objective = 0 "
    "AND v.value_type = 'FINITE'"
)
_PARAMS_SQL = (
    "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json FROM trial_params p "
    "JOIN trials t ON t.trial_id = p.trial_id "
    "WHERE t.study_id = :study_id AND t.state = 'COMPLETE'"
)


def _complete_trials(
    storage: optuna.storages.RDBStorage, study_id: int, *, fraction: float = 1.0
) -> list[FrozenTrial]:
    # The complete trials with a finite value, with only their params and value, in two queries
    # on Optuna's tables: Optuna's get_all_trials also loads every intermediate value and
    # attribute through the ORM, about 1 ms a trial here (80 s for 80,000 trials). With a
    # ``fraction`` below 1, only that fraction of them (_SAMPLE_SQL).
    where, bound = "", {"study_id": study_id}
    if fraction < 1:
        where, bound["below"] = _SAMPLE_SQL, math.ceil(fraction * _SAMPLE_MODULUS)
    with storage.engine.connect() as conn:
        values = conn.execute(sqlalchemy.text(_VALUES_SQL + where), bound).all()
        param_rows = conn.execute(sqlalchemy.text(_PARAMS_SQL + where), bound).all()
    dists: dict[str, BaseDistribution] = {}
    params: dict[int, dict[str, Any]] = {}
    distributions: dict[int, dict[str, BaseDistribution]] = {}
    for trial_id, name, internal, dist_json in param_rows:
        dist = dists.get(dist_json)
        if dist is None:
            dist = dists[dist_json] = json_to_distribution(dist_json)
        params.setdefault(trial_id, {})[name] = dist.to_external_repr(internal)
        distributions.setdefault(trial_id, {})[name] = dist
    return [
        FrozenTrial(
            number=number,
            state=TrialState.COMPLETE,
            value=value,
            datetime_start=None,
            datetime_complete=None,
            params=params.get(trial_id, {}),
            distributions=distributions.get(trial_id, {}),
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=trial_id,
        )
        for trial_id, number, value in sorted(values, key=lambda row: row[1])
    ]


def _common_params(
    trials: list[FrozenTrial], *, one_distribution: bool
) -> tuple[list[str], dict[str, str]]:
    # Parameters present in every trial (with one distribution, if asked), and why the others
    # are left out.
    n = len(trials)
    present: Counter[str] = Counter()
    dists: dict[str, set[BaseDistribution]] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            present[name] += 1
            dists.setdefault(name, set()).add(dist)
    common, left_out = [], {}
    for name, k in present.items():
        if k < n:
            left_out[name] = f"conditional: present in {k} of {n} trials"
        elif one_distribution and len(dists[name]) > 1:
            left_out[name] = (
                f"its range changed during the study ({len(dists[name])} different "
                "distributions); fANOVA needs one"
            )
        else:
            common.append(name)
    return sorted(common), left_out


def _evaluate(
    study: TrialsView, evaluator: Evaluator, params: list[str] | None, seed: int
) -> tuple[dict[str, float], list[str]]:
    # Imported here: optuna.importance imports scikit-learn (about 2 s), which the service's
    # start-up should not wait for.
    from optuna.importance import (
        BaseImportanceEvaluator,
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    impl: BaseImportanceEvaluator
    if evaluator == "fanova":
        impl = FanovaImportanceEvaluator(n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=seed)
    else:
        impl = PedAnovaImportanceEvaluator()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importances = get_param_importances(study, evaluator=impl, params=params)  # type: ignore[arg-type]
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    return importances, notes


def _is_evaluator(name: str) -> TypeGuard[Evaluator]:
    return name in EVALUATORS


def parameter_importance(
    storage: optuna.storages.RDBStorage,
    name: str,
    *,
    evaluator: str = "ped_anova",
    seed: int = 0,
    max_fanova_trials: int = FANOVA_MAX_TRIALS,
    max_ped_anova_trials: int = PED_ANOVA_MAX_TRIALS,
) -> ImportanceReport:
    """How much each parameter mattered in study ``name``, beside its checklist tier.

    ``evaluator``: ``"ped_anova"`` (default; Optuna's PED-ANOVA: which parameters a top-10%
    trial needs; deterministic; beyond ``max_ped_anova_trials`` complete trials it rates a
    fixed sample of about that many, spread over the study's history) or ``"fanova"`` (a
    random-forest functional ANOVA, ``FANOVA_TREES`` trees of depth ``FANOVA_DEPTH`` seeded
    with ``seed``; it sees only the latest ``max_fanova_trials`` complete trials, and takes
    seconds where PED-ANOVA takes a fraction of one).

    Importance is computed over the parameters present in every used trial. A conditional
    parameter (present in only some) is listed with importance ``None`` and the reason
    ("conditional: present in k of n trials"), as is a space parameter no trial has (fixed by
    the spec, or its condition never held).

    Only complete trials with a finite value count; pruned and failed trials never do (the
    report's ``trials_note`` says how many were left out).

    Raises :class:`~hpsearch.errors.StudyNotFound`, :class:`~hpsearch.errors.UsageError` for an
    unknown evaluator, and :class:`~hpsearch.errors.NotEnoughTrials` with fewer than two
    complete trials or when every complete trial has the same value.
    """
    if not _is_evaluator(evaluator):
        raise UsageError(f"unknown evaluator {evaluator!r}; use one of {', '.join(EVALUATORS)}")
    spec: StudySpec = load_spec(storage, name)
    study_id = storage.get_study_id_from_name(name)
    counts = count_trials_by_state(storage, study_id)
    n_complete = counts[TrialState.COMPLETE]
    sampled = evaluator == "ped_anova" and n_complete > max_ped_anova_trials
    fraction = max_ped_anova_trials / n_complete if sampled else 1.0
    trials = _complete_trials(storage, study_id, fraction=fraction)
    if len(trials) < 2:
        raise NotEnoughTrials(
            f"study {name!r} has {len(trials)} complete trial(s) with a finite value; parameter "
            "importance needs at least 2 (more than 20 to mean much): let workers run more trials"
        )
    if len({t.values[0] for t in trials}) == 1:
        raise NotEnoughTrials(
            f"all {len(trials)} complete trials of study {name!r} have the same {spec.metric} "
            f"({trials[0].values[0]:g}), so no parameter can explain a difference; check the "
            "objective, or let more trials run"
        )

    non_finite = 0 if sampled else n_complete - len(trials)
    used_note = []
    if sampled:
        used_note.append(
            f"PED-ANOVA rates a fixed sample of {len(trials)} of them, spread over the study"
        )
    if evaluator == "fanova" and len(trials) > max_fanova_trials:
        trials = sorted(trials, key=lambda t: t.number)[-max_fanova_trials:]
        used_note.append(f"fANOVA uses the latest {max_fanova_trials} of them")
    left = {
        "pruned": counts[TrialState.PRUNED],
        "failed": counts[TrialState.FAIL],
        "running": counts[TrialState.RUNNING],
        "waiting": counts[TrialState.WAITING],
    }
    trials_note = f"complete trials only: {n_complete} complete"
    if non_finite:
        trials_note += f" ({non_finite} with a non-finite value left out)"
    trials_note += "".join(f", {used}" for used in used_note)
    not_used = ", ".join(f"{k} {v}" for k, v in left.items() if v)
    if not_used:
        trials_note += f"; not used: {not_used}"

    study = TrialsView(spec.direction or "minimize", trials)
    n = len(trials)
    present: Counter[str] = Counter(p for t in trials for p in t.distributions)
    # Conditional parameters are left out: fANOVA cannot take them, and PED-ANOVA's conditional
    # variant rates each within its few trials, where a handful of lucky values reads as a
    # large importance (measured: a parameter with no effect ranked first from 20 of 60 trials).
    params, left_out = _common_params(trials, one_distribution=evaluator == "fanova")
    importances, notes = _evaluate(study, evaluator, params, seed) if params else ({}, [])

    space = spec.search_space
    rows: list[ImportanceRow] = []
    ranked = sorted(importances.items(), key=lambda kv: (-kv[1], kv[0]))
    for rank, (param, value) in enumerate(ranked, start=1):
        third = _third(rank, len(ranked), value)
        defined = space.params.get(param)
        impact = defined.impact if defined else None
        verdict, agrees = _verdict(impact, third)
        reason = None if defined else "not a parameter of the study's space"
        rows.append(
            ImportanceRow(
                param=param,
                importance=float(value),
                rank=rank,
                third=_THIRD_NAMES[third],
                impact=impact,
                checklist=_rows_of(defined.checklist) if defined else [],
                present_in=present[param],
                verdict=verdict,
                agrees=agrees,
                reason=reason,
            )
        )
    unrated = dict(left_out)
    for param in space.params:
        if param in unrated or param in importances:
            continue
        if param in spec.fixed:
            unrated[param] = f"fixed at {spec.fixed[param]!r} by the study spec"
        else:
            unrated[param] = "in no complete trial (its condition never held)"
    for param, reason in sorted(unrated.items()):
        defined = space.params.get(param)
        rows.append(
            ImportanceRow(
                param=param,
                importance=None,
                rank=None,
                third=None,
                impact=defined.impact if defined else None,
                checklist=_rows_of(defined.checklist) if defined else [],
                present_in=present.get(param, 0),
                verdict="not ranked",
                agrees=None,
                reason=reason,
            )
        )
    return ImportanceReport(
        study=name,
        evaluator=evaluator,
        metric=spec.metric,
        direction=spec.direction or "minimize",
        seed=seed if evaluator == "fanova" else None,
        trials_used=n,
        trials_note=trials_note,
        rows=rows,
        notes=notes,
    )
