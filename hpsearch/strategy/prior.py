"""The checklist as a soft prior: impact tiers as a belief that the study's evidence overrules.

:class:`PriorSampler` searches every knob from the first trial after the defaults, but holds a
knob at the incumbent's value with a probability that its impact tier sets (tight for low tiers,
loose for high ones) and that decays with the number of finished trials, as the prior's weight
does in piBO. Once the study has enough finished trials, PED-ANOVA importance on them re-ranks
the knobs: a knob the evidence says matters is searched whatever its tier, one it says does not
matter is held more. :func:`prior_misfit` says where the evidence disagrees with the checklist.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard, cast

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpsearch.spaces import SearchSpace, default_config
from hpsearch.strategy.locks import sampler_lock
from hpsearch.strategy.prior_tpe import PriorWeightedTPE

__all__ = [
    "Misfit",
    "PriorSampler",
    "TrialsView",
    "evidence_importances",
    "prior_misfit",
    "uniform_share",
]

Tier = Literal["high", "medium", "low"]
Role = Literal["default", "held", "prior", "searched", "uniform"]
_TIERS: tuple[Tier, ...] = ("high", "medium", "low")
_EVIDENCE_CAP = 300  # trials the importance is computed on, at most
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_ANY = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)

#: Probability of holding a knob of each tier at the incumbent's value, before decay.
HOLD: dict[str, float] = {"high": 0.3, "medium": 0.8, "low": 0.95}
#: Spread of a prior draw around the incumbent, as a fraction of the knob's (log) range.
_WIDTH = 0.25


#: Study system attribute: the latest evidence importances a worker computed, with the
#: checkpoint they are of (``{"at": [m, step], "shares": {...}}``), for the study's other workers.
EVIDENCE_ATTR = "hpsearch:evidence_importances"

#: Trial system attribute: how the sampler drew the trial (``"prior"``: by the plan of holds
#: and prior draws; ``"search"``: every knob searched), for :meth:`PriorSampler.search_share`.
ARM_ATTR = "hpsearch:arm"


class PriorSampler(optuna.samplers.BaseSampler):
    """Sample a :class:`SearchSpace` with its impact tiers as a soft, decaying prior.

    - The first trial that is not an enqueued one runs the space's defaults (unless an
      enqueued trial already ran them).
    - Every later trial searches every knob, except that each knob is *held* at the
      incumbent's value (the default until a finished trial beats it) with probability
      ``hold[tier] / (1 + n / decay)``, ``n`` being the number of finished trials (and, with
      ``stall``, divided again the longer the incumbent has not improved).
    - From ``evidence_after`` finished trials on, PED-ANOVA importance on the study's finished
      trials (recomputed every ``evidence_every``, or every fifth of the study's size once that
      is more, on at most 300 trials) replaces the checklist's tier: a knob with a
      large share of the importance is held as rarely as a high-impact one, a knob with a small
      share as often as a low-impact one.
    - The searched knobs are sampled jointly by multivariate TPE (with constant liar, so
      running trials are not sampled again). During TPE's start-up, and for a knob that has
      taken fewer than ``fresh`` distinct values so far (one that was mostly held), values are
      drawn from the prior instead: broad around the incumbent, a quarter of them uniform.
    - A config equal to one another trial has (running ones included) is redrawn.

    Every decision is a function of the study's trials, its name, the trial number and
    ``seed``, so several workers (each with its own sampler over one storage) make the same
    ones; the importance and plan caches only save recomputing them. One exception: the
    evidence at each checkpoint is computed by one worker and stored with the study
    (``EVIDENCE_ATTR``); until it is there, the others rank by the previous checkpoint's
    (by the checklist's tiers before the first).

    Args:
        space: the search space whose tiers and defaults are the prior.
        seed: seed of the inner sampler and of the hold and prior draws.
        n_trials: accepted for symmetry with the other strategies; the prior does not need a
            budget.
        hold: probability of holding a knob of each tier before decay.
        decay: finished trials at which the hold probabilities have halved.
        evidence_after: finished trials before importance re-ranks the knobs (0: never).
        evidence_every: finished trials between two importance computations.
        fresh: distinct values a knob needs before TPE samples it rather than the prior.
        stall: above 0, the hold probabilities are divided by ``1 + s / stall`` as well, ``s``
            being the finished trials numbered after the incumbent: the longer the study goes
            without improving on it, the less the prior holds and the more is searched.
        mix: above 0, a trial searches every knob (no holds, no prior draws) with a
            probability that starts at ``mix`` and moves with the evidence, as PriorBand moves
            its mix of prior and uniform draws: the odds are multiplied by the square of how
            much more often such trials made the top quarter of the finished ones than the
            prior's did (:meth:`search_share`). Off by default: on the search-quality suites
            (30 seeds) 0.15 to 0.4 were within the seed noise of off, and did not help a wrong
            checklist (``benchmarks/results/search_quality_variants.md``).
        width: how far a prior draw strays from the incumbent, per tier: the normal's spread
            as a fraction of the knob's (log) range, 0.25 for every tier unless given (the
            redraws of a repeated config ignore it). On 30 seeds, tighter high tiers
            (0.1/0.2/0.3) lost on the synthetic suite from 50 trials on and on HPOLib at 10,
            tighter low tiers (0.35/0.2/0.1) on the MLP grid at 25
            (``benchmarks/results/search_quality_variants.md``).
        region: the share of the best finished trials that the re-ranking's PED-ANOVA judges
            importance within (its ``region_quantile``): 1 asks which knobs separate the top
            quarter (the top tenth from 100 trials on) from all trials, 0.5 which separate it
            from the better half, i.e. which knobs still matter near the incumbent. On seeds
            it was not chosen on, 0.5 was ahead on the MLP grid and behind on the synthetic
            suite and HPOLib at 100 trials, within the seed noise
            (``benchmarks/results/search_quality_variants.md``), so the default stays 1.
        prior_weight: above 0, the inner TPE's acquisition is weighted by the prior as in
            piBO, with weight ``prior_weight / n`` (:class:`PriorWeightedTPE`); off by default,
            since it did not help on the search-quality suites
            (``benchmarks/results/search_quality_variants.md``).
        inner: the sampler for searched knobs; multivariate TPE with constant liar by default
            (it learns from the constraint values the worker sets on infeasible trials).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int | None = None,
        n_trials: int | None = None,
        hold: dict[str, float] | None = None,
        decay: float = 30.0,
        evidence_after: int = 15,
        evidence_every: int = 10,
        fresh: int = 5,
        prior_weight: float = 0.0,
        stall: float = 0.0,
        mix: float = 0.0,
        width: dict[str, float] | None = None,
        region: float = 1.0,
        inner: optuna.samplers.BaseSampler | None = None,
    ) -> None:
        hold = {**HOLD, **(hold or {})}
        if set(hold) != set(_TIERS) or not all(0.0 <= p <= 1.0 for p in hold.values()):
            raise ValueError(f"`hold` must map high/medium/low to probabilities, got {hold=}")
        if decay <= 0:
            raise ValueError(f"`decay` must be > 0 trials, got {decay=}")
        if evidence_after < 0 or evidence_every < 1:
            raise ValueError(
                "`evidence_after` must be >= 0 and `evidence_every` >= 1, "
                f"got {evidence_after=}, {evidence_every=}"
            )
        if fresh < 0:
            raise ValueError(f"`fresh` must be >= 0, got {fresh=}")
        if stall < 0:
            raise ValueError(f"`stall` must be >= 0 trials (0: off), got {stall=}")
        if not 0.0 <= mix < 1.0:
            raise ValueError(f"`mix` must be in [0, 1) (0: off), got {mix=}")
        self._mix = float(mix)
        width = {**dict.fromkeys(_TIERS, _WIDTH), **(width or {})}
        if set(width) != set(_TIERS) or not all(w > 0 for w in width.values()):
            raise ValueError(f"`width` must map high/medium/low to spreads > 0, got {width=}")
        self._width = width
        # One spread for every tier (the default): the draws need not look the tier up.
        self._one_width = width["high"] if len(set(width.values())) == 1 else None
        if not 0.25 < region <= 1.0:
            raise ValueError(f"`region` must be in (0.25, 1], got {region=}")
        self._region = float(region)
        self._space = space
        self._seed = 0 if seed is None else int(seed)
        self._hold = hold
        self._decay = float(decay)
        self._evidence_after = evidence_after
        self._evidence_every = evidence_every
        self._fresh = fresh
        self._stall = float(stall)
        self._defaults = default_config(space)
        if inner is None and prior_weight > 0:
            inner = PriorWeightedTPE(self._defaults, self.tiers, beta=prior_weight, seed=seed)
        self._inner = inner or optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True
        )
        self._n_startup = getattr(self._inner, "_n_startup_trials", 10)
        self._mo_inner = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        self._intersection = IntersectionSearchSpace(include_pruned=True)
        self._sizes = {name: _size(p.distribution()) for name, p in space.params.items()}
        self._importance: dict[tuple[str, int, int | None], dict[str, float]] = {}
        self._plans: dict[tuple[str, int, int], dict[str, Role]] = {}
        self._pending: dict[int, dict[str, Any]] = {}  # this process's asked, unsuggested trials
        self._incumbents: dict[tuple[str, int], dict[str, Any]] = {}

    # ---- decisions: functions of the study's trials -------------------------------------

    def is_defaults_trial(self, study: Study, trial_number: int) -> bool:
        """Whether this trial runs the defaults: every earlier trial was enqueued, and none of
        them with the defaults."""
        for t in study._get_trials(deepcopy=False, use_cache=True):
            if t.number >= trial_number:
                continue
            fixed = t.system_attrs.get("fixed_params")
            if fixed is None:
                return False
            if all(fixed.get(k) == v for k, v in self._defaults.items() if k in fixed):
                return False
        return True

    def hold_probability(self, tier: str, n_finished: int, stalled: int = 0) -> float:
        """The probability of holding a knob of ``tier`` after ``n_finished`` finished trials,
        ``stalled`` of them since the incumbent last improved."""
        p = self._hold[tier] / (1.0 + n_finished / self._decay)
        if self._stall > 0:
            p /= 1.0 + stalled / self._stall
        return p

    def tiers(self, study: Study) -> dict[str, str]:
        """Each knob's effective tier: the checklist's, or the evidence's once there is enough."""
        tiers: dict[str, str] = {name: p.impact for name, p in self._space.params.items()}
        share = self.importances(study)
        if share:
            d = len(share)
            for name, s in share.items():
                if name in tiers:
                    tiers[name] = "high" if s >= 1.0 / d else "medium" if s >= 0.3 / d else "low"
        return tiers

    def importances(self, study: Study) -> dict[str, float]:
        """PED-ANOVA importance (shares summing to 1) on the study's first finished trials, or
        ``{}`` before ``evidence_after`` of them; cached between recomputations."""
        if self._evidence_after == 0 or study._is_multi_objective():
            return {}  # one ranking needs one metric: several objectives keep the checklist's
        step, scored = _scored(study, max(self._evidence_after, 4))
        if len(scored) < max(self._evidence_after, 4):
            return {}
        # Recompute at 15, 25, 35, ... trials, then at most every fifth of the study's size,
        # on the latest _EVIDENCE_CAP of the first m trials: the cost stays flat as it grows.
        m = self._evidence_after
        while True:
            every = max(self._evidence_every, m // 5)
            if m + every > len(scored):
                break
            m += every
        key = (study.study_name, m, step)
        if key not in self._importance:
            shares = self._shared_importances(study, m, step, scored)
            if shares is None:  # another worker is computing them: the last ones until then
                earlier = [v for k, v in self._importance.items() if k[0] == study.study_name]
                return earlier[-1] if earlier else {}  # {}: the checklist's tiers
            self._importance[key] = shares
        return self._importance[key]

    def _shared_importances(
        self, study: Study, m: int, step: int | None, scored: list[tuple[FrozenTrial, float]]
    ) -> dict[str, float] | None:
        """The importances at checkpoint ``m``: as another worker of the study stored them
        (``EVIDENCE_ATTR``), None while it computes them, else computed here and stored for the
        others. Each process used to compute every checkpoint itself: with 8 workers on 2 cores
        that was 40% of a no-op trial's time."""
        storage, study_id = study._storage, study._study_id
        at = [m, step]
        stored = storage.get_study_system_attrs(study_id).get(EVIDENCE_ATTR)
        if not _is_at(stored, at):
            # Say so first, under the study's lock, so that one worker computes them (after
            # the lock: the study's claims wait on it).
            with sampler_lock(study):
                stored = storage.get_study_system_attrs(study_id).get(EVIDENCE_ATTR)
                if not _is_at(stored, at):
                    storage.set_study_system_attr(
                        study_id, EVIDENCE_ATTR, {"at": at, "shares": None}
                    )
            if not _is_at(stored, at):  # this worker said so
                return self._compute_importances(study, m, step, scored)
        shares = stored.get("shares")
        if isinstance(shares, dict):
            return {str(k): float(v) for k, v in shares.items()}
        return None

    def _compute_importances(
        self, study: Study, m: int, step: int | None, scored: list[tuple[FrozenTrial, float]]
    ) -> dict[str, float]:
        window = _as_trials(scored[max(0, m - _EVIDENCE_CAP) : m])
        shares = evidence_importances(study, window, region=self._region)
        study._storage.set_study_system_attr(
            study._study_id, EVIDENCE_ATTR, {"at": [m, step], "shares": shares}
        )
        return shares

    def plan(self, study: Study, trial_number: int) -> dict[str, Role]:
        """What each knob of the space does at ``trial_number``: ``default`` (the defaults
        trial), ``held`` (at the incumbent's value), ``prior`` (drawn from the prior),
        ``searched`` (sampled by the inner sampler) or ``uniform`` (a whole config drawn
        uniformly, as successive halving's cheapest brackets do; see :func:`uniform_share`)."""
        if self.is_defaults_trial(study, trial_number):
            return dict.fromkeys(self._space.params, "default")
        finished = study._get_trials(deepcopy=False, use_cache=True, states=_FINISHED)
        n = len(finished)
        key = (study.study_name, trial_number, n)
        if key in self._plans:
            return dict(self._plans[key])
        if self._rng(study, trial_number, "uniform").random() < uniform_share(study, trial_number):
            out: dict[str, Role] = dict.fromkeys(self._space.params, "uniform")
            self._plans[key] = out
            return dict(out)
        startup = n < self._n_startup
        if self._mix > 0:
            share = self.search_share(study, finished)
            if self._rng(study, trial_number, "arm").random() < share:
                out = dict.fromkeys(self._space.params, "uniform" if startup else "searched")
                self._plans[key] = out
                return dict(out)
        tiers = self.tiers(study)
        stalled = self._stalled(study, finished) if self._stall > 0 else 0
        out = {}
        for name in self._space.params:
            coin = self._rng(study, trial_number, name).random()
            if coin < self.hold_probability(tiers[name], n, stalled):
                out[name] = "held"
            elif startup or not _varied(finished, name, min(self._fresh, self._sizes[name])):
                out[name] = "prior"
            else:
                out[name] = "searched"
        if all(role == "held" for role in out.values()) and out:
            # A trial that holds everything re-runs the incumbent: search the likeliest knob.
            first = min(out, key=lambda k: self._hold[tiers[k]])
            out[first] = "prior"
        if len(self._plans) > 64:  # a cache of the last few trials' plans, nothing more
            self._plans.clear()
        self._plans[key] = out
        return dict(out)

    def search_share(self, study: Study, finished: Sequence[FrozenTrial]) -> float:
        """The probability that a trial searches every knob (no holds, no prior draws), as
        PriorBand mixes its prior with uniform draws: ``mix`` at first, then moved by how
        often each kind of trial made the top quarter of the finished ones."""
        drawn = [t for t in finished if t.system_attrs.get(ARM_ATTR) and _finite(t.value)]
        odds = self._mix / (1.0 - self._mix)
        if len(drawn) >= 4:
            sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
            values = sorted(sign * cast(float, t.value) for t in drawn)
            cut = values[max(0, len(values) // 4 - 1)]
            top = {"prior": 0, "search": 0}
            count = {"prior": 0, "search": 0}
            for t in drawn:
                arm = "search" if t.system_attrs[ARM_ATTR] == "search" else "prior"
                count[arm] += 1
                top[arm] += sign * cast(float, t.value) <= cut
            # Rates of making the top quarter, each with two pseudo-trials at the base rate.
            rate = {a: (top[a] + 0.5) / (count[a] + 2.0) for a in top}
            odds *= (rate["search"] / rate["prior"]) ** 2
        return min(max(odds / (1.0 + odds), 0.05), 0.95)

    @staticmethod
    def _stalled(study: Study, finished: Sequence[FrozenTrial]) -> int:
        """Finished trials numbered after the incumbent: how long the study has not improved."""
        best = _best(study)
        if best is None:
            return 0
        return sum(t.number > best.number for t in finished)

    def incumbent(self, study: Study) -> dict[str, Any]:
        """The values knobs are held at: the best finished trial's (in a pruned study, the best
        at the highest rung of three or more trials), else the defaults."""
        n = len(study._get_trials(deepcopy=False, use_cache=True, states=_FINISHED))
        key = (study.study_name, n)
        if key not in self._incumbents:
            best = _best(study)
            self._incumbents.clear()  # one entry: the latest count of finished trials
            self._incumbents[key] = {**self._defaults, **(best.params if best is not None else {})}
        return dict(self._incumbents[key])

    # ---- the sampler protocol -----------------------------------------------------------

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self.is_defaults_trial(study, trial.number):
            return {}
        if self._trade_off(study):
            return self._mo_inner.infer_relative_search_space(_per_ask(study), trial)
        space = self._intersection.calculate(study, use_cache=True)
        space = {k: d for k, d in space.items() if not d.single()}
        if space:
            return space
        # Nothing finished yet (several trials asked at once): the knobs the study has seen.
        for t in sorted(
            study._get_trials(deepcopy=False, use_cache=True, states=_ANY), key=lambda t: -t.number
        ):
            if t.distributions:
                return {k: d for k, d in t.distributions.items() if not d.single()}
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self._trade_off(study):
            return self._mo_inner.sample_relative(_per_ask(study), trial, search_space)
        if not search_space:
            return {}
        plan = self.plan(study, trial.number)
        if self._mix > 0:
            arm = "search" if all(r in ("searched", "uniform") for r in plan.values()) else "prior"
            study._storage.set_trial_system_attr(trial._trial_id, ARM_ATTR, arm)
        center = self.incumbent(study)
        others = {k: d for k, d in search_space.items() if k not in plan or plan[k] == "searched"}
        tpe = self._inner.sample_relative(_per_ask(study), trial, others) if others else {}
        params: dict[str, Any] = {}
        held: set[str] = set()
        for name, dist in search_space.items():
            role = plan.get(name, "searched")
            if role == "held" and _contains(dist, center.get(name)):
                params[name] = center[name]
                held.add(name)
            elif role == "searched" and name in tpe:
                params[name] = tpe[name]
            elif role == "uniform":
                params[name] = _draw(
                    self._rng(study, trial.number, name, 2000), dist, None, uniform=1
                )
            elif name in self._space.params:
                params[name] = self._draw(study, trial.number, name, dist, center.get(name))
            elif name in tpe:
                params[name] = tpe[name]
        # Redraw a config another trial already has (parallel workers, small discrete spaces).
        # First move one knob that is not held; if that cannot escape, draw all of them anew.
        movable = [k for k in params if plan.get(k) != "held"] or list(params)
        # A continuous knob drawn afresh makes the config new: only check the others.
        fresh = any(_size(search_space[k]) == math.inf for k in movable if k not in held)
        seen = set() if fresh else self._seen(study, trial.number, list(search_space))
        for attempt in range(1, 60):
            if _key(params) not in seen:
                break
            rng = self._rng(study, trial.number, "redraw", attempt)
            if attempt <= 10:
                name = movable[int(rng.integers(len(movable)))]
                params[name] = _draw(rng, search_space[name], center.get(name), uniform=0.5)
            else:
                params = {k: _draw(rng, search_space[k], None, uniform=1.0) for k in params}
        self._pending[trial.number] = params
        return params

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        param = self._space.params.get(param_name)
        if self._trade_off(study) and not self.is_defaults_trial(study, trial.number):
            return self._mo_inner.sample_independent(
                _per_ask(study), trial, param_name, param_distribution
            )
        if param is None:
            return self._inner.sample_independent(
                _per_ask(study), trial, param_name, param_distribution
            )
        role = self.plan(study, trial.number).get(param_name, "searched")
        center = self.incumbent(study).get(param_name, param.default)
        if role == "default" and _contains(param_distribution, param.default):
            return param.default
        if role == "held" and _contains(param_distribution, center):
            return center
        if role == "uniform":
            rng = self._rng(study, trial.number, param_name, 2000)
            return _draw(rng, param_distribution, None, uniform=1)
        if role == "prior" or role == "default":
            return self._draw(study, trial.number, param_name, param_distribution, center)
        return self._inner.sample_independent(
            _per_ask(study), trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        (self._mo_inner if self._trade_off(study) else self._inner).before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._pending.pop(trial.number, None)
        inner = self._mo_inner if self._trade_off(study) else self._inner
        inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
        self._mo_inner.reseed_rng()

    @staticmethod
    def _trade_off(study: Study) -> bool:
        """A study of several objectives: after the defaults, multi-objective TPE samples every
        knob. It has no one incumbent to hold knobs at, and holding them at the defaults (or
        drawing near them) kept its trials at the defaults' cost: on the MLP grid's
        loss-against-parameters benchmark the front's gap at 100 trials was -1.34 that way,
        -1.86 with TPE after the defaults (benchmarks/multi_objective.py)."""
        return study._is_multi_objective()

    # ---- helpers ------------------------------------------------------------------------

    def _rng(self, study: Study, number: int, name: str, attempt: int = 0) -> np.random.Generator:
        return np.random.default_rng(
            [
                self._seed & 0xFFFFFFFF,
                zlib.crc32(study.study_name.encode()),
                number,
                zlib.crc32(name.encode()),
                attempt,
            ]
        )

    def _draw(
        self, study: Study, number: int, name: str, dist: BaseDistribution, center: Any
    ) -> Any:
        width = self._one_width
        if width is None:
            width = self._width[self.tiers(study).get(name, "high")]
        rng = self._rng(study, number, name, 1000)
        return _draw(rng, dist, center, uniform=0.25, width=width)

    def _seen(self, study: Study, number: int, names: list[str]) -> set[tuple[Any, ...]]:
        seen = set()
        for t in study._get_trials(deepcopy=False, use_cache=True, states=_ANY):
            if t.number != number and all(k in t.params for k in names):
                seen.add(_key({k: t.params[k] for k in names}))
        for n, params in self._pending.items():
            if n != number and all(k in params for k in names):
                seen.add(_key({k: params[k] for k in names}))
        return seen


class _PerAsk:
    """``study`` as the inner samplers see it: every read of its trials comes from the copy
    Optuna keeps for the trial being asked (``Study._get_trials(use_cache=True)``).

    TPE with constant liar reads the study afresh on each ``_sample`` call, one for the
    relative sample and one per independently sampled knob, so that it sees the trials other
    workers started: on PostgreSQL a read of the changed trials each, 20 ms of each no-op
    trial's CPU (issue 19). The copy is read once per ask, after the trial was claimed, so it
    already holds every trial running then.
    """

    __slots__ = ("_study",)

    def __init__(self, study: Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        return self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=True)


def _is_at(stored: Any, at: list[Any]) -> TypeGuard[dict[str, Any]]:
    """Whether ``stored`` (the study's ``EVIDENCE_ATTR``) is of checkpoint ``at``."""
    return isinstance(stored, dict) and stored.get("at") == at


def _per_ask(study: Study) -> Study:
    return cast(Study, _PerAsk(study))


def uniform_share(study: Study, trial_number: int) -> float:
    """The probability that a trial of a multi-fidelity study is drawn uniformly: PriorBand's
    ``1 / (1 + eta**r)``, ``r`` being the rung its successive-halving bracket starts at.

    Under Hyperband, a trial of the cheapest bracket (judged after ``min_resource`` epochs) is
    uniform with probability 1/2, one of the next 1/4 at ``eta = 3``, and so on: many configs
    tried cheaply, few expensively. ASHA (successive halving) is one bracket; other pruners, and
    a study without one, get 0 (the prior's own draws keep a uniform quarter).
    """
    pruner = study.pruner
    if isinstance(pruner, optuna.pruners.HyperbandPruner):
        try:
            rung = pruner._get_bracket_id(study, _numbered(trial_number))
            eta = pruner._reduction_factor
        except (AttributeError, TypeError, AssertionError):  # Optuna's internals moved
            return 0.0
    elif isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner):
        rung = getattr(pruner, "_min_early_stopping_rate", 0)
        eta = getattr(pruner, "_reduction_factor", 4)
    else:
        return 0.0
    if not isinstance(eta, (int, float)) or eta < 2:
        return 0.0
    return 1.0 / (1.0 + float(eta) ** int(rung))


def _numbered(number: int) -> FrozenTrial:
    # A stand-in for trial `number`: Hyperband's bracket depends on the number alone.
    return FrozenTrial(
        number=number,
        state=TrialState.WAITING,
        value=None,
        datetime_start=None,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )


# ---- prior draws --------------------------------------------------------------------------


def _draw(
    rng: np.random.Generator,
    dist: BaseDistribution,
    center: Any,
    *,
    uniform: float,
    width: float = _WIDTH,
) -> Any:
    """A value of ``dist`` drawn around ``center``, normal with ``width`` times its (log)
    range as the spread (uniform with probability ``uniform``, or when there is no usable
    center)."""
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        if center in choices and len(choices) > 1 and rng.random() >= uniform + 0.15:
            return center
        return choices[int(rng.integers(len(choices)))]
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    log = dist.log
    lo, hi = (math.log(dist.low), math.log(dist.high)) if log else (dist.low, dist.high)
    ok = center is not None and _contains(dist, center)
    if not ok or rng.random() < uniform:
        x = rng.uniform(lo, hi)
    else:
        c = math.log(center) if log else float(center)
        x = c + rng.normal() * width * (hi - lo)
        for _ in range(8):
            if lo <= x <= hi:
                break
            x = c + rng.normal() * width * (hi - lo)
        x = min(max(x, lo), hi)
    value = math.exp(x) if log else x
    step = dist.step
    if isinstance(dist, IntDistribution):
        s = step or 1
        v = round((value - dist.low) / s) * s + dist.low
        return int(min(max(v, dist.low), dist.high))
    if step is not None:
        v = round((value - dist.low) / step) * step + dist.low
        return float(min(max(v, dist.low), dist.high))
    return float(min(max(value, dist.low), dist.high))


def _varied(trials: list[FrozenTrial], name: str, enough: float) -> bool:
    """Whether ``name`` took at least ``enough`` distinct values in ``trials``."""
    values: set[Any] = set()
    for t in reversed(trials):
        if name in t.params:
            values.add(_key(t.params[name]))
            if len(values) >= enough:
                return True
    return len(values) >= enough


def _size(dist: BaseDistribution) -> float:
    """How many values ``dist`` has (infinite for a continuous float)."""
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return (dist.high - dist.low) // dist.step + 1
    if isinstance(dist, IntDistribution):
        return dist.high - dist.low + 1
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        return round((dist.high - dist.low) / dist.step) + 1
    return math.inf


def _contains(dist: BaseDistribution, value: Any) -> bool:
    if value is None:
        return False
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _key(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    if isinstance(value, float):
        return round(value, 12)
    return value


def _completed(study: Study) -> list[FrozenTrial]:
    done = study._get_trials(deepcopy=False, use_cache=True, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: t.number)


def _scored(study: Study, enough: int) -> tuple[int | None, list[tuple[FrozenTrial, float]]]:
    """The study's finished trials with values that compare, oldest first, and the step
    (epoch) the values are taken at (``None``: the trials' final values).

    Without pruned trials: the complete ones, by their values. With them (a multi-fidelity
    study), every trial's value at the highest step that at least ``enough`` trials reached,
    as in the rungs of successive halving: the evidence and the incumbent come from the highest
    rung that holds enough trials, not only from the few trials that ran to the end.
    """
    trials = study._get_trials(deepcopy=False, use_cache=True, states=_FINISHED)
    if not any(
        t.state == TrialState.PRUNED and t.intermediate_values and not _infeasible(t)
        for t in trials
    ):
        return None, [(t, t.value) for t in _completed(study) if _finite(t.value)]
    # Among rungs, a broken constraint is no evidence (read only here: it costs more than the
    # rest; the worker ends an infeasible trial pruned, so a complete one is feasible).
    trials = [t for t in trials if not _infeasible(t)]
    counts: dict[int, int] = {}
    for t in trials:
        for step, reported in t.intermediate_values.items():
            if _finite(reported):
                counts[step] = counts.get(step, 0) + 1
    if not counts:  # the pruned trials reported nothing finite (NaN losses, say)
        return None, [(t, t.value) for t in _completed(study) if _finite(t.value)]
    full = [s for s, c in counts.items() if c >= enough]
    step = max(full) if full else max(counts, key=lambda s: (counts[s], -s))
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        v = t.intermediate_values.get(step)
        if v is None and t.state == TrialState.COMPLETE and not t.intermediate_values:
            v = t.value  # a trial that reported no steps: its final value
        if _finite(v):
            out.append((t, float(v)))
    return step, out


def _infeasible(trial: FrozenTrial) -> bool:
    """Whether the trial broke a constraint (Optuna's constraint values, > 0 when broken)."""
    return any(v > 0 for v in trial.constraints.values())


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def _as_trials(scored: list[tuple[FrozenTrial, float]]) -> list[FrozenTrial]:
    """Complete trials carrying the scored values, for an importance evaluator (which tells
    trials apart by their ids: each keeps its own)."""
    out = []
    for t, v in scored:
        trial = optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=v)
        trial.number, trial._trial_id = t.number, t._trial_id
        out.append(trial)
    return out


def _best(study: Study) -> FrozenTrial | None:
    """The best finished trial: by its value, or at the highest rung of 3 or more trials."""
    if study._is_multi_objective():
        return None
    _, done = _scored(study, 3)
    if not done:
        return None
    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    return min(done, key=lambda tv: sign * tv[1])[0]


# ---- evidence -----------------------------------------------------------------------------


def evidence_importances(
    study: Study, trials: list[FrozenTrial], *, skip_held: bool = False, region: float = 1.0
) -> dict[str, float]:
    """PED-ANOVA importance of each parameter on ``trials`` (finished ones of ``study``), as
    shares summing to 1; ``{}`` when it cannot be computed (too few trials, one objective).

    With ``skip_held``, a continuous knob is judged only on the trials where it took a value of
    its own: a trial that repeats an earlier trial's exact value held it there (at the
    incumbent's), and the good trials that hold a knob would otherwise make it look important
    whatever it does. :func:`prior_misfit` judges so (on 16 studies of 25 trials each, it then
    flags a low-tier knob that decides 16 times rather than 12); the sampler's re-ranking does
    not, since on HPOLib that cost it 0.3 of log regret at 25 trials.
    """
    if study._is_multi_objective() or len(trials) < 4:
        return {}
    names = sorted({k for t in trials for k in t.params})
    # Knobs judged on the same trials share one evaluation (all of them, without skip_held).
    groups: dict[tuple[int, ...], list[str]] = {}
    for name in names:
        subset = _own_values(trials, name) if skip_held else [t for t in trials if name in t.params]
        groups.setdefault(tuple(id(t) for t in subset), []).append(name)
    by_id = {id(t): t for t in trials}
    raw: dict[str, float] = {}
    for ids, group in groups.items():
        if len(ids) < 4:
            continue
        sub = TrialsView(study.direction, [by_id[i] for i in ids])
        # With few trials the top decile is one or two trials: look at the top quarter.
        quantile = 0.1 if len(ids) >= 100 else 0.25
        evaluator = optuna.importance.PedAnovaImportanceEvaluator(
            target_quantile=quantile, region_quantile=region
        )
        try:
            with warnings.catch_warnings():  # `normalize` is experimental in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # Trials of equal values: "Parameter importances will be equal", as they are.
                warnings.filterwarnings("ignore", "Target and region quantiles", UserWarning)
                values = optuna.importance.get_param_importances(
                    sub,  # type: ignore[arg-type]  # what the evaluator reads of a study
                    evaluator=evaluator,
                    params=group,
                    normalize=False,
                )
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        for name, value in values.items():
            if math.isfinite(value) and value >= 0:
                raw[name] = float(value)
    total = sum(raw.values())
    if not raw or not math.isfinite(total) or total <= 0:
        return {}
    return {k: v / total for k, v in sorted(raw.items(), key=lambda kv: -kv[1])}


class TrialsView:
    """What Optuna's importance evaluators read of a study (its direction and its complete
    trials), over a list of trials: copying them into an in-memory study first (``add_trials``
    deep-copies each) was 80% of the evidence's cost."""

    def __init__(self, direction: StudyDirection | str, trials: list[FrozenTrial]) -> None:
        if isinstance(direction, str):
            direction = StudyDirection[direction.upper()]
        self.directions = [direction]
        self.trials = trials

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        if states is None:
            return list(self.trials)
        return [t for t in self.trials if t.state in states]

    def _is_multi_objective(self) -> bool:
        return False


def _own_values(trials: list[FrozenTrial], name: str) -> list[FrozenTrial]:
    """The trials that have ``name``; for a continuous knob, only those whose value no earlier
    trial had (a held value repeats the incumbent's exactly)."""
    have = [t for t in trials if name in t.params]
    dist = have[0].distributions.get(name) if have else None
    if dist is None or _size(dist) != math.inf:
        return have
    seen: set[Any] = set()
    out = []
    for t in sorted(have, key=lambda t: t.number):
        key = _key(t.params[name])
        if key not in seen:
            out.append(t)
        seen.add(key)
    return out


@dataclass(frozen=True, kw_only=True)
class Misfit:
    """Where a study's evidence disagrees with the checklist's impact tiers.

    ``message`` is one line for a person; ``ranking`` the study's knobs, most important
    first, with their importance shares and checklist tiers.
    """

    message: str
    checklist_top: str
    evidence_top: str
    ranking: list[tuple[str, float, str]]


def prior_misfit(study: Study, space: SearchSpace, *, min_trials: int = 15) -> list[Misfit]:
    """Where this study's finished trials disagree with the checklist's tiers, with numbers.

    Empty while fewer than ``min_trials`` (and three per knob of the space) trials are
    complete, or when the evidence agrees: the knob this study ranks first is in the
    checklist's highest tier present, or it leads the runner-up by less than a factor of 1.5
    (an objective of pure noise ranks a knob first too; on the 31-knob tabular space, 3 of 6
    pure-noise studies of 100 trials still get a misfit, so the message says "this study's
    trials rank", not that the checklist is wrong).
    """
    if study._is_multi_objective():
        return []  # the importance ranks knobs by one metric
    # A ranking of k knobs needs a few trials per knob before it says anything.
    min_trials = max(min_trials, 3 * len(space.params))
    step, scored = _scored(study, min_trials)
    if len(scored) < min_trials:
        return []
    share = evidence_importances(study, _as_trials(scored[-_EVIDENCE_CAP:]), skip_held=True)
    share = {k: v for k, v in share.items() if k in space.params}
    if not share:
        return []
    ranking = sorted(share.items(), key=lambda kv: -kv[1])
    tier = {k: space.params[k].impact for k in share}
    order = {t: i for i, t in enumerate(_TIERS)}
    top_tier = min((tier[k] for k in share), key=lambda t: order[t])
    ev_top, ev_share = ranking[0]
    if tier[ev_top] == top_tier:
        return []
    # Noise ranks some knob first too: speak only when the first clearly leads the second.
    runner_up = ranking[1][1] if len(ranking) > 1 else 0.0
    if ev_share < 1.5 * runner_up:
        return []
    in_top = [(k, v) for k, v in ranking if tier[k] == top_tier]
    ck_top, ck_share = in_top[0]
    message = (
        f"the checklist says {ck_top} ({top_tier} impact) matters most; this study's "
        f"{len(scored)} finished trials{'' if step is None else f' (compared at epoch {step})'} "
        f"rank {ev_top} ({tier[ev_top]} impact) first "
        f"(importance {ev_share:.2f} vs {ck_share:.2f})"
    )
    return [
        Misfit(
            message=message,
            checklist_top=ck_top,
            evidence_top=ev_top,
            ranking=[(k, round(v, 4), tier[k]) for k, v in ranking],
        )
    ]
