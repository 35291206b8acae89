"""Samplers and pruners from a spec; the impact-tiered sampler with plain Optuna."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from hpsearch.spaces import SearchSpace, default_config, load_space, suggest_config
from hpsearch.strategy import ImpactSampler, PriorSampler, make_pruner, make_sampler, prior_misfit

SPACE = SearchSpace.model_validate(
    {
        "name": "toy",
        "task": "tabular_classification",
        "params": {
            "lr": {
                "type": "float",
                "low": 1e-4,
                "high": 1.0,
                "log": True,
                "default": 1e-2,
                "impact": "high",
                "checklist": "Learining Rate (LR)",
            },
            "depth": {
                "type": "int",
                "low": 1,
                "high": 8,
                "default": 2,
                "impact": "medium",
                "checklist": "Num of layers (depth)",
            },
            "act": {
                "type": "categorical",
                "choices": ["relu", "gelu", "silu"],
                "default": "relu",
                "impact": "low",
                "checklist": "Nonlinearity (act fn)",
            },
        },
    }
)


def _run(sampler, n, objective=lambda c: -abs(c["lr"] - 0.1)):
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for _ in range(n):
        trial = study.ask()
        config = suggest_config(trial, SPACE)
        study.tell(trial, objective(config))
    return study


def test_impact_sampler_starts_from_defaults_then_widens_tier_by_tier():
    # patience=0: only the budget widens the search, as documented by `widen_at`.
    sampler = ImpactSampler(SPACE, seed=0, n_trials=20, widen_at=(0.25, 0.5), patience=0)
    study = _run(sampler, 20)
    trials = study.trials
    assert trials[0].params == {"lr": 1e-2, "depth": 2, "act": "relu"}
    early = trials[1:5]  # high tier only
    assert len({t.params["lr"] for t in early}) == 4
    assert all(t.params["depth"] == 2 and t.params["act"] == "relu" for t in early)
    middle = trials[5:10]  # high + medium
    assert len({t.params["depth"] for t in middle}) > 1
    assert all(t.params["act"] == "relu" for t in middle)
    late = trials[10:]  # everything
    assert len({t.params["act"] for t in late}) > 1
    assert sampler.searched_tiers(0) == ()
    assert sampler.searched_tiers(4) == ("high",)
    assert sampler.searched_tiers(5) == ("high", "medium")
    assert sampler.searched_tiers(10) == ("high", "medium", "low")


def test_impact_sampler_searches_the_searched_tier_jointly():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=100, patience=0)
    study = _run(sampler, 12)
    number = study.ask().number
    running = study.trials[number]
    # Only the high tier goes to the inner (multivariate) sampler; the rest are held.
    assert set(sampler.infer_relative_search_space(study, running)) == {"lr"}
    late = ImpactSampler(SPACE, seed=0, n_trials=12, patience=0)  # budget spent: all tiers
    late.before_trial(study, running)
    assert set(late.infer_relative_search_space(study, running)) == {"lr", "depth", "act"}


def test_impact_sampler_widens_early_when_the_prior_is_wrong():
    # Only the low-impact `act` matters: the high tier stalls, so the next tiers join long
    # before the budget rule (50% of 200 trials) would let `act` vary.
    sampler = ImpactSampler(SPACE, seed=0, n_trials=200, patience=5)
    study = _run(sampler, 40, objective=lambda c: {"relu": 0.0, "gelu": 0.5, "silu": 1.0}[c["act"]])
    assert sampler.searched_tiers(40) == ("high",)  # what the budget rule alone would search
    assert sampler.searched_tiers(40, study) == ("high", "medium", "low")
    assert {t.params["act"] for t in study.trials} == {"relu", "gelu", "silu"}
    assert study.best_value == 1.0
    # The same study with a rule that waits for the budget keeps `act` at its default.
    patient = _run(
        ImpactSampler(SPACE, seed=0, n_trials=200, patience=0),
        40,
        objective=lambda c: float(c["act"] == "silu"),
    )
    assert {t.params["act"] for t in patient.trials} == {"relu"}


def test_impact_sampler_keeps_the_high_tier_while_it_improves():
    # Every trial improves on the last: no stall, so only the budget widens.
    values = iter(range(100))
    sampler = ImpactSampler(SPACE, seed=0, n_trials=100, patience=3)
    study = _run(sampler, 20, objective=lambda c: next(values))
    assert sampler.searched_tiers(20, study) == ("high",)
    assert all(t.params["act"] == "relu" and t.params["depth"] == 2 for t in study.trials)


def test_impact_sampler_holds_a_default_only_where_the_objective_allows_it():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=10)
    study = optuna.create_study(sampler=sampler)
    # The objective suggests `lr` on a range without the space's default (1e-2).
    study.optimize(lambda t: t.suggest_float("lr", 0.5, 1.0) + t.suggest_int("depth", 1, 8), 3)
    assert all(0.5 <= t.params["lr"] <= 1.0 for t in study.trials)
    assert study.trials[0].params["depth"] == 2


def test_impact_sampler_with_several_trials_running_at_once():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=40)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for _ in range(10):  # four workers: ask four trials, then tell them
        batch = [study.ask() for _ in range(4)]
        configs = [suggest_config(t, SPACE) for t in batch]
        for trial, config in zip(batch, configs):
            study.tell(trial, -abs(config["lr"] - 0.1) - 0.01 * config["depth"])
    trials = study.trials
    assert len(trials) == 40 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert trials[0].params == {"lr": 1e-2, "depth": 2, "act": "relu"}
    # Trials running side by side are not copies of each other.
    assert all(len({t.params["lr"] for t in trials[i : i + 4]}) == 4 for i in range(4, 40, 4))
    assert study.best_value > -0.05


def test_impact_sampler_with_pruned_trials():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=30, patience=3)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for i in range(30):
        trial = study.ask()
        config = suggest_config(trial, SPACE)
        trial.report(-abs(config["lr"] - 0.1), step=0)
        if i % 2:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, -abs(config["lr"] - 0.1))
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == 15
    assert study.trials[0].params == {"lr": 1e-2, "depth": 2, "act": "relu"}
    # Pruned trials are no evidence of a stall: all pruned, nothing widens early.
    all_pruned = optuna.create_study(sampler=ImpactSampler(SPACE, seed=0, n_trials=200))
    for _ in range(30):
        trial = all_pruned.ask()
        suggest_config(trial, SPACE)
        all_pruned.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert ImpactSampler(SPACE, n_trials=200, patience=3).searched_tiers(30, all_pruned) == (
        "high",
    )


def test_impact_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="widen_at"):
        ImpactSampler(SPACE, widen_at=(0.6, 0.3))
    with pytest.raises(ValueError, match="patience"):
        ImpactSampler(SPACE, patience=-1)


def test_impact_sampler_leaves_parameters_outside_the_space_to_its_inner_sampler():
    sampler = ImpactSampler(SPACE, seed=0, n_trials=10)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    assert len({t.params["x"] for t in study.trials}) == 5


def test_impact_sampler_on_a_bundled_space_respects_conditions():
    space = load_space("demo")
    study = optuna.create_study(
        sampler=ImpactSampler(space, seed=1, n_trials=30), direction="maximize"
    )
    for _ in range(30):
        trial = study.ask()
        config = suggest_config(trial, space)
        assert ("optim.momentum" in config) == (config["optim.name"] == "sgd")
        study.tell(trial, config["optim.lr"])


@pytest.mark.parametrize(
    "strategy, cls",
    [
        ("impact", PriorSampler),
        ("tiers", ImpactSampler),
        ("tpe", optuna.samplers.TPESampler),
        ("random", optuna.samplers.RandomSampler),
        ("gp", optuna.samplers.GPSampler),
        ("cmaes", optuna.samplers.CmaEsSampler),
    ],
)
def test_make_sampler(strategy, cls):
    assert isinstance(make_sampler(strategy, SPACE, seed=0, n_trials=10), cls)


def test_make_pruner_uses_epochs_as_the_resource():
    hyperband = make_pruner("hyperband", epochs=27)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 27
    assert isinstance(
        make_pruner("median", epochs=10, n_startup_trials=2), optuna.pruners.MedianPruner
    )
    with pytest.raises(ValueError, match="unknown pruner"):
        make_pruner("sometimes", epochs=5)
    with pytest.raises(ValueError, match="does not take"):
        make_pruner("asha", epochs=5, patience=3)


# ---- PriorSampler: the checklist as a soft prior --------------------------------------------

WIDE = SearchSpace.model_validate(
    {
        "name": "wide",
        "task": "tabular_regression",
        "params": {
            **SPACE.model_dump()["params"],
            "wd": {
                "type": "float",
                "low": 1e-6,
                "high": 1e-1,
                "log": True,
                "default": 1e-4,
                "impact": "low",
                "checklist": "Weight decay",
            },
        },
    }
)


def _wd_only(config):  # only the low-tier weight decay matters; best at 1e-2
    return abs(math.log10(config["wd"]) + 2.0)


def _run_space(sampler, space, n, objective, study=None):
    # A fixed name: the prior's draws depend on the study's name (so workers agree), and a
    # generated one would make each run of a test draw differently.
    study = study or optuna.create_study(sampler=sampler, study_name="prior-test")
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, objective(suggest_config(trial, space)))
    return study


def test_prior_sampler_starts_from_the_defaults_unless_they_were_enqueued():
    study = _run_space(PriorSampler(WIDE, seed=0), WIDE, 3, _wd_only)
    assert study.trials[0].params == default_config(WIDE)
    assert study.trials[1].params != default_config(WIDE)
    enqueued = optuna.create_study(sampler=PriorSampler(WIDE, seed=0))
    enqueued.enqueue_trial(default_config(WIDE))
    _run_space(None, WIDE, 3, _wd_only, study=enqueued)
    configs = [t.params for t in enqueued.trials]
    assert configs.count(default_config(WIDE)) == 1  # the defaults run once, not twice


def test_prior_sampler_explores_a_low_tier_knob_that_the_evidence_says_matters():
    sampler = PriorSampler(WIDE, seed=0)
    study = _run_space(sampler, WIDE, 40, _wd_only)
    late = study.trials[20:]
    assert len({round(t.params["wd"], 9) for t in late}) >= 12  # tried many values of it
    assert sampler.tiers(study)["wd"] in ("high", "medium")  # moved up by the evidence
    assert study.best_value < 0.15  # and found its good region (1e-2 +- a factor 1.4)
    # The tier schedule of ImpactSampler keeps it at its default over the same budget.
    held = _run_space(ImpactSampler(WIDE, seed=0, n_trials=200, patience=0), WIDE, 40, _wd_only)
    assert {t.params["wd"] for t in held.trials} == {1e-4}


def test_prior_sampler_decisions_agree_between_workers_on_one_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    a = optuna.create_study(study_name="s", storage=url, sampler=PriorSampler(WIDE, seed=3))
    _run_space(None, WIDE, 30, _wd_only, study=a)
    b = optuna.load_study(study_name="s", storage=url, sampler=PriorSampler(WIDE, seed=3))
    for number in (30, 31, 45):
        assert a.sampler.plan(a, number) == b.sampler.plan(b, number)
    assert a.sampler.importances(a) == b.sampler.importances(b) != {}
    assert a.sampler.incumbent(a) == b.sampler.incumbent(b)


def test_one_worker_computes_each_checkpoints_evidence_and_the_others_read_it(
    tmp_path, monkeypatch
):
    from hpsearch.strategy import prior

    url = f"sqlite:///{tmp_path / 'one.db'}"

    def worker():
        return optuna.load_study(study_name="s", storage=url, sampler=PriorSampler(WIDE, seed=3))

    def stored():
        return a._storage.get_study_system_attrs(a._study_id)[prior.EVIDENCE_ATTR]

    a = optuna.create_study(study_name="s", storage=url, sampler=PriorSampler(WIDE, seed=3))
    _run_space(None, WIDE, 20, _wd_only, study=a)  # a computed checkpoint 15's evidence
    at_15 = stored()
    assert at_15["at"] == [15, None] and at_15["shares"]
    computed = []
    real = prior.evidence_importances
    monkeypatch.setattr(
        prior, "evidence_importances", lambda *a, **k: computed.append(1) or real(*a, **k)
    )
    b, c = worker(), worker()
    assert b.sampler.importances(b) == c.sampler.importances(c) == at_15["shares"]
    assert computed == []  # read, not computed again
    _run_space(None, WIDE, 6, _wd_only, study=b)  # 26 trials: b computes checkpoint 25
    assert len(computed) == 1 and stored()["at"] == [25, None]
    late = worker()
    assert late.sampler.importances(late) == stored()["shares"] and len(computed) == 1
    # While a worker computes a checkpoint, the others rank by the last one they had...
    a._storage.set_study_system_attr(
        a._study_id, prior.EVIDENCE_ATTR, {"at": [25, None], "shares": None}
    )
    x = optuna.load_study(study_name="s", storage=url, sampler=PriorSampler(WIDE, seed=3))
    x.sampler._importance[("s", 15, None)] = at_15["shares"]
    assert x.sampler.importances(x) == at_15["shares"]
    # ... or, with none, by the checklist's tiers; and compute nothing themselves.
    fresh = worker()
    assert fresh.sampler.importances(fresh) == {}
    assert fresh.sampler.tiers(fresh) == {k: p.impact for k, p in WIDE.params.items()}
    assert len(computed) == 1


def test_evidence_importances_rate_the_trials_as_optuna_does_on_a_study():
    study = _run_space(PriorSampler(WIDE, seed=1), WIDE, 40, _wd_only)
    from hpsearch.strategy.prior import _as_trials, _scored, evidence_importances

    _, scored = _scored(study, 4)
    trials = _as_trials(scored)
    mine = evidence_importances(study, trials)
    copy = optuna.create_study()
    copy.add_trials(trials)
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=0.25)
    theirs = optuna.importance.get_param_importances(copy, evaluator=evaluator)
    assert max(mine, key=mine.get) == max(theirs, key=theirs.get) == "wd"
    total = sum(theirs.values())
    assert mine == pytest.approx({k: v / total for k, v in theirs.items()})
    # Within the better half of the trials (PriorSampler(region=0.5)), as Optuna does too.
    local = evidence_importances(study, trials, region=0.5)
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(
        target_quantile=0.25, region_quantile=0.5
    )
    theirs = optuna.importance.get_param_importances(copy, evaluator=evaluator)
    total = sum(theirs.values())
    assert local == pytest.approx({k: v / total for k, v in theirs.items()}) != mine
    with pytest.raises(ValueError, match="region"):
        PriorSampler(WIDE, region=0.25)


def test_prior_sampler_never_asks_the_same_config_twice_in_parallel():
    small = SearchSpace.model_validate(
        {
            "name": "small",
            "task": "tabular_regression",
            "params": {
                "opt": {
                    "type": "categorical",
                    "choices": ["adam", "sgd", "lion"],
                    "default": "adam",
                    "impact": "high",
                    "checklist": "Optimizer",
                },
                "act": {
                    "type": "categorical",
                    "choices": ["relu", "gelu", "silu"],
                    "default": "relu",
                    "impact": "low",
                    "checklist": "Nonlinearity (act fn)",
                },
                "depth": {
                    "type": "int",
                    "low": 1,
                    "high": 2,
                    "default": 1,
                    "impact": "medium",
                    "checklist": "Num of layers (depth)",
                },
            },
        }
    )
    storage = optuna.storages.InMemoryStorage()
    workers = [
        optuna.create_study(study_name="p", storage=storage, sampler=PriorSampler(small, seed=0)),
        optuna.load_study(study_name="p", storage=storage, sampler=PriorSampler(small, seed=0)),
    ]
    score = {"adam": 0.0, "sgd": 1.0, "lion": 2.0}
    for round_ in range(4):  # four trials running at once, asked by two workers in turn
        running = []
        for i in range(4):
            worker = workers[i % 2]
            trial = worker.ask()
            running.append((worker, trial, suggest_config(trial, small)))
        for worker, trial, config in running:
            worker.tell(trial, score[config["opt"]] + config["depth"])
    configs = [tuple(sorted(t.params.items())) for t in workers[0].trials]
    assert len(configs) == 16 and len(set(configs)) == 16


def test_prior_misfit_names_the_knob_the_evidence_ranks_first():
    study = _run_space(PriorSampler(WIDE, seed=0), WIDE, 40, _wd_only)
    (misfit,) = prior_misfit(study, WIDE)
    assert misfit.evidence_top == "wd" and misfit.checklist_top == "lr"
    assert "wd (low impact) first" in misfit.message and "lr (high impact)" in misfit.message
    assert misfit.ranking[0][0] == "wd" and misfit.ranking[0][1] > 0.5
    # Where the checklist is right, there is nothing to say.
    right = _run_space(PriorSampler(WIDE, seed=0), WIDE, 40, lambda c: abs(math.log10(c["lr"]) + 1))
    assert prior_misfit(right, WIDE) == []


def test_prior_sampler_learns_from_the_rungs_of_a_pruned_study():
    # A multi-fidelity study: 40 trials pruned after 1 or 3 epochs, 3 run to the end. The
    # evidence (and the incumbent) must come from the rungs, not wait for 15 complete trials.
    import numpy as np

    rng = np.random.default_rng(0)
    dists = {k: p.distribution() for k, p in WIDE.params.items()}
    study = optuna.create_study(sampler=PriorSampler(WIDE, seed=0), study_name="prior-test")
    for i in range(43):
        config = {
            k: (
                d.choices[int(rng.integers(len(d.choices)))]
                if hasattr(d, "choices")
                else float(np.exp(rng.uniform(np.log(d.low), np.log(d.high))))
                if d.log
                else d.low + (d.high - d.low) * float(rng.random())
            )
            for k, d in dists.items()
        }
        config = {
            k: int(round(v)) if isinstance(dists[k], optuna.distributions.IntDistribution) else v
            for k, v in config.items()
        }
        final = _wd_only(config)
        steps = 27 if i < 3 else (1 if i % 3 else 3)
        curve = {e: final + 2.0 / e for e in range(1, steps + 1)}
        study.add_trial(
            optuna.trial.create_trial(
                params=config,
                distributions=dists,
                intermediate_values=curve,
                state=optuna.trial.TrialState.COMPLETE
                if steps == 27
                else optuna.trial.TrialState.PRUNED,
                value=curve[27] if steps == 27 else None,
            )
        )
    sampler = study.sampler
    assert sampler.importances(study) != {}  # from the rungs, before 15 complete trials
    assert sampler.tiers(study)["wd"] in ("high", "medium")
    # The incumbent is the best trial at the highest rung that holds 3 trials or more (step 3
    # here: 3 complete trials and 14 pruned after 3 epochs).
    at_3 = [t for t in study.trials if 3 in t.intermediate_values]
    best = min(at_3, key=lambda t: t.intermediate_values[3])
    assert sampler.incumbent(study) == best.params
    (misfit,) = prior_misfit(study, WIDE)
    assert misfit.evidence_top == "wd" and "compared at epoch 3" in misfit.message


def test_uniform_share_follows_the_successive_halving_bracket():
    from hpsearch.strategy.prior import uniform_share

    hb = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=27, reduction_factor=3)
    study = optuna.create_study(pruner=hb, study_name="prior-test")
    trial = study.ask()  # Hyperband sets up its brackets when it first judges a trial
    trial.report(1.0, 1)
    trial.should_prune()
    shares = {uniform_share(study, n) for n in range(200)}
    assert shares == {1 / (1 + 3**r) for r in range(4)}  # 1/2, 1/4, 1/10, 1/28 by bracket
    asha = optuna.create_study(pruner=optuna.pruners.SuccessiveHalvingPruner(reduction_factor=3))
    assert uniform_share(asha, 5) == 0.5
    for pruner in (optuna.pruners.MedianPruner(), optuna.pruners.NopPruner()):
        assert uniform_share(optuna.create_study(pruner=pruner), 5) == 0.0
    # A Hyperband study's plans draw whole configs uniformly about that often.
    sampler = PriorSampler(WIDE, seed=0)
    study = optuna.create_study(sampler=sampler, pruner=hb, study_name="prior-test")
    _run_space(None, WIDE, 12, _wd_only, study=study)
    plans = [sampler.plan(study, n) for n in range(12, 212)]
    uniform = sum(set(p.values()) == {"uniform"} for p in plans)
    assert 30 <= uniform <= 110


def test_prior_sampler_survives_pruned_trials_that_reported_only_nan():
    # A diverged trial reports NaN and is pruned: the next trials must still be sampled.
    study = optuna.create_study(sampler=PriorSampler(WIDE, seed=0), study_name="prior-test")
    for value in (float("nan"), float("inf")):
        trial = study.ask()
        suggest_config(trial, WIDE)
        trial.report(value, 1)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    _run_space(None, WIDE, 3, _wd_only, study=study)
    assert [t.state.name for t in study.trials][-3:] == ["COMPLETE"] * 3


def test_log_prior_peaks_at_the_default_and_narrows_with_the_tier():
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from hpsearch.strategy.prior_tpe import log_prior

    space = {
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "act": CategoricalDistribution(["relu", "gelu", "silu"]),
    }
    defaults = {"lr": 1e-2, "act": "relu"}
    samples = {"lr": np.array([1e-2, 1e-1, 1.0]), "act": np.array([0.0, 0.0, 0.0])}
    for tier in ("high", "low"):
        scores = log_prior({"lr": samples["lr"]}, space, defaults, {"lr": tier})
        assert scores[0] == 0 and scores[0] > scores[1] > scores[2]
    loose = log_prior({"lr": samples["lr"]}, space, defaults, {"lr": "high"})
    tight = log_prior({"lr": samples["lr"]}, space, defaults, {"lr": "low"})
    assert tight[2] < loose[2]
    cat = log_prior({"act": np.array([0.0, 1.0])}, space, defaults, {"act": "low"})
    assert cat[0] > cat[1]


def test_prior_weight_pulls_the_inner_tpe_toward_the_defaults():
    from hpsearch.strategy.prior_tpe import PriorWeightedTPE

    no_holds = {"high": 0.0, "medium": 0.0, "low": 0.0}

    def distance(prior_weight: float) -> float:
        sampler = PriorSampler(SPACE, seed=0, hold=no_holds, prior_weight=prior_weight)
        assert isinstance(sampler._inner, PriorWeightedTPE) == (prior_weight > 0)
        study = _run(sampler, 40, objective=lambda c: -abs(math.log10(c["lr"]) + 0.5))
        late = [t.params["lr"] for t in study.trials[15:]]
        return float(np.median([abs(math.log10(v) + 2) for v in late]))  # from the default

    assert distance(1000.0) < distance(0.0)


def test_a_stalled_study_holds_fewer_knobs_at_the_incumbent():
    def defaults_best(config):  # nothing beats the defaults: the study stalls from trial 1
        return 0.0 if config == default_config(WIDE) else 1.0

    held_counts = {}
    for stall in (0.0, 5.0):
        sampler = PriorSampler(WIDE, seed=0, stall=stall, evidence_after=0)
        study = _run_space(sampler, WIDE, 40, defaults_best)
        # A float knob equal to its default was held there (a draw never lands on it exactly).
        held_counts[stall] = sum(
            t.params[k] == default_config(WIDE)[k] for t in study.trials[10:] for k in ("lr", "wd")
        )
    assert held_counts[5.0] < 0.6 * held_counts[0.0], held_counts
    # At 30 finished trials, 20 of them since the incumbent: the low tier's 0.95 / 2 / 5.
    assert PriorSampler(WIDE, stall=5).hold_probability("low", 30, 20) == pytest.approx(0.095)
    with pytest.raises(ValueError, match="stall"):
        PriorSampler(WIDE, stall=-1)


def test_the_mix_moves_toward_the_arm_whose_trials_make_the_top_quarter():
    sampler = PriorSampler(WIDE, seed=0, mix=0.25, evidence_after=0)
    study = _run_space(sampler, WIDE, 30, _wd_only)
    arms = [t.system_attrs.get("hpsearch:arm") for t in study.trials[1:]]
    assert set(arms) == {"prior", "search"}, arms  # every sampled trial says how it was drawn
    # Workers with their own samplers over one study agree on the share.
    again = PriorSampler(WIDE, seed=0, mix=0.25, evidence_after=0)
    assert again.search_share(study, study.trials) == sampler.search_share(study, study.trials)

    def share(search_values, prior_values):
        trials = [
            optuna.trial.create_trial(value=v, system_attrs={"hpsearch:arm": arm})
            for arm, values in (("search", search_values), ("prior", prior_values))
            for v in values
        ]
        return sampler.search_share(optuna.create_study(), trials)

    assert share([], []) == 0.25  # no evidence yet: the mix itself
    assert share([0.1, 0.2, 0.3, 0.4], [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]) > 0.5
    assert share([1.0, 1.1, 1.2, 1.3], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) < 0.15
    assert share([0.0] * 40, [1.0] * 40) == 0.95  # never all one arm
    with pytest.raises(ValueError, match="mix"):
        PriorSampler(WIDE, mix=1.0)


def test_a_tiers_width_sets_how_far_its_prior_draws_stray_from_the_incumbent():
    def spread(width):
        # No holds, no evidence: during TPE's start-up every knob is a prior draw.
        never = {"high": 0.0, "medium": 0.0, "low": 0.0}
        sampler = PriorSampler(WIDE, seed=0, hold=never, evidence_after=0, width=width)
        study = _run_space(sampler, WIDE, 10, lambda c: 1.0)  # the defaults stay the incumbent
        return float(np.median([abs(math.log10(t.params["lr"] / 1e-2)) for t in study.trials[1:]]))

    # lr spans 4 decades: 0.02 of it is 0.08 decades, 0.5 of it is 2 (a quarter are uniform).
    assert spread({"high": 0.02}) < 0.3 < 0.6 < spread({"high": 0.5})
    assert spread(dict.fromkeys(("high", "medium", "low"), 0.02)) < 0.3  # one width for all
    with pytest.raises(ValueError, match="width"):
        PriorSampler(WIDE, width={"high": 0.0})
