"""Grid search (strategy `grid`): the grid's points, each run once, and the study ends with it."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.db.storage import open_storage
from hpsearch.errors import SpecError
from hpsearch.spaces import SearchSpace, suggest_config
from hpsearch.strategy import STRATEGIES, SpaceGridSampler, build_grid, make_sampler
from hpsearch.strategy.grid import MAX_KNOB_VALUES
from hpsearch.worker import run_worker

TESTS = Path(__file__).parents[1]  # the objectives modules beside conftest.py
REPO = TESTS.parent


def _knob(**fields):
    return {"default": fields.pop("default"), **fields}


# Four listable knobs (3 x 4 x 3 x 2 = 72 points) and one continuous float.
_FLAT = {
    "name": "flat",
    "task": "custom",
    "params": {
        "optim.lr": _knob(type="categorical", choices=[0.001, 0.01, 0.1], default=0.01),
        "model.width": _knob(type="int", low=2, high=8, step=2, default=4),
        "model.dropout": _knob(type="float", low=0.0, high=0.5, step=0.25, default=0.0),
        "train.amp": _knob(type="categorical", choices=[False, True], default=False),
        "optim.wd": _knob(type="float", low=1e-6, high=1e-2, log=True, default=1e-4),
    },
}

# momentum exists only for sgd: sgd x 3 momenta + adam = 4 optimizer settings, x 3 rates.
_CONDITIONAL = {
    "name": "cond",
    "task": "custom",
    "params": {
        "optim.name": _knob(type="categorical", choices=["sgd", "adam"], default="sgd"),
        "optim.momentum": _knob(
            type="float", low=0.8, high=0.9, step=0.05, default=0.9, when={"optim.name": ["sgd"]}
        ),
        "optim.lr": _knob(type="categorical", choices=[0.001, 0.01, 0.1], default=0.01),
    },
}


def _key(config):
    return json.dumps(config, sort_keys=True)


def _grid_spec(name, space, **overrides):
    spec = {
        "name": name,
        "space": space,
        "metric": "score",
        "direction": "maximize",
        "strategy": "grid",
        "pruner": "none",
        "seed": 0,
    }
    spec.update(overrides)
    return spec


def _trials(storage_url, name):
    return optuna.load_study(study_name=name, storage=storage_url).get_trials(deepcopy=False)


def _env():
    """The environment of an `hpsearch` process that imports the objectives beside conftest.py."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }


def _hpsearch(*args):
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the grid ----------------------------------------------------------------------------------


def test_the_grid_is_exactly_the_product_of_the_knobs_values():
    space = SearchSpace.model_validate(_FLAT)
    grid = build_grid(space)
    expected = {
        _key(
            {"optim.lr": lr, "model.width": w, "model.dropout": d, "train.amp": a, "optim.wd": 1e-4}
        )
        for lr, w, d, a in itertools.product(
            [0.001, 0.01, 0.1], [2, 4, 6, 8], [0.0, 0.25, 0.5], [False, True]
        )
    }
    configs = [_key(c) for c in grid.configs()]
    assert len(configs) == len(grid) == 72 and set(configs) == expected
    assert grid.held == {"optim.wd": "continuous: no `step`"}  # held at its default, 1e-4
    assert grid.summary().startswith("72 grid points over optim.lr (3), model.width (4)")
    assert "held at their defaults: optim.wd (continuous: no `step`)" in grid.summary()


def test_a_conditional_knob_is_gridded_only_where_its_condition_holds():
    space = SearchSpace.model_validate(_CONDITIONAL)
    configs = list(build_grid(space).configs())
    assert len(configs) == (3 + 1) * 3  # not 2 x 3 x 3: adam has no momentum to vary
    assert len({_key(c) for c in configs}) == len(configs)
    assert all(("optim.momentum" in c) == (c["optim.name"] == "sgd") for c in configs)
    # Every point is what suggest_config asks for, condition included (a replayed config).
    for config in configs:
        assert suggest_config(optuna.trial.FixedTrial(config), space) == config


def test_fixed_knobs_are_not_gridded_and_decide_the_conditions():
    space = SearchSpace.model_validate(_CONDITIONAL)
    grid = build_grid(space, {"optim.name": "adam"})
    assert "optim.name" not in grid.names
    assert list(grid.configs()) == [{"optim.lr": v} for v in (0.001, 0.01, 0.1)]


def test_a_knob_of_too_many_values_is_held_and_a_log_int_of_few_values_is_gridded():
    params = {
        "model.width": _knob(type="int", low=1, high=1000, default=64),  # 1000 values: too many
        "model.depth": _knob(type="int", low=1, high=4, log=True, default=2),  # 1, 2, 3, 4
        "aug.p": _knob(type="float", low=0.0, high=1.0, step=0.01, default=0.5),  # 101 values
    }
    grid = build_grid(
        SearchSpace.model_validate({"name": "big", "task": "custom", "params": params})
    )
    assert grid.values["model.depth"] == [1, 2, 3, 4]
    assert set(grid.held) == {"model.width", "aug.p"}
    assert f"more than {MAX_KNOB_VALUES}" in grid.held["model.width"]
    assert [c["model.width"] for c in grid.configs()] == [64] * 4  # at its default


def test_grid_is_a_strategy_and_builds_a_grid_sampler():
    assert "grid" in STRATEGIES and "held at their default" in STRATEGIES["grid"]
    sampler = make_sampler("grid", SearchSpace.model_validate(_FLAT), seed=0)
    assert isinstance(sampler, SpaceGridSampler) and isinstance(
        sampler, optuna.samplers.GridSampler
    )
    # Plain Optuna: optimize stops by itself once every point ran, each once.
    space = SearchSpace.model_validate(_CONDITIONAL)
    study = optuna.create_study(sampler=make_sampler("grid", space, seed=3))
    study.optimize(lambda t: float(suggest_config(t, space)["optim.lr"]))
    assert len(study.trials) == 12 and len({_key(t.params) for t in study.trials}) == 12


def test_workers_of_different_seeds_number_the_points_alike(sqlite_url):
    # Optuna's GridSampler shuffles its points by the seed: workers of one study, seeded apart
    # (see open_study's seed_offset), would read each other's point numbers as other points.
    space = SearchSpace.model_validate(_CONDITIONAL)
    optuna.create_study(study_name="s", storage=sqlite_url)
    workers = [
        optuna.load_study(
            study_name="s", storage=sqlite_url, sampler=make_sampler("grid", space, seed=s)
        )
        for s in (0, 1)
    ]
    for i in range(12):
        study = workers[i % 2]
        trial = study.ask()
        study.tell(trial, float(suggest_config(trial, space)["optim.lr"]))
    configs = [_key(t.params) for t in workers[0].get_trials(deepcopy=False)]
    assert sorted(configs) == sorted(_key(c) for c in build_grid(space).configs())


def test_the_readme_and_an_unknown_strategy_name_list_grid(tmp_path):
    readme = (REPO / "README.md").read_text()
    spec_line = next(line for line in readme.splitlines() if line.startswith("strategy: impact"))
    assert "| grid" in spec_line, spec_line
    assert "strategy `grid`" in readme
    spec = tmp_path / "study.yaml"
    spec.write_text(json.dumps(_grid_spec("typo", _FLAT, strategy="gird")))
    done = _hpsearch("submit", str(spec), "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 1 and "unknown strategy 'gird'" in done.stderr
    assert "grid" in done.stderr.split("choose one of")[1]


# -- at submit ---------------------------------------------------------------------------------

_CONTINUOUS = {
    "name": "smooth",
    "task": "custom",
    "params": {
        "optim.lr": _knob(type="float", low=1e-4, high=1e-1, log=True, default=1e-3),
        "model.dropout": _knob(type="float", low=0.0, high=0.5, default=0.1),
        "model.width": _knob(type="int", low=16, high=512, log=True, default=64),
    },
}


def test_submit_refuses_a_space_with_nothing_to_grid_in_one_line(
    tmp_path, live_service, sqlite_url, make_api_token
):
    with pytest.raises(SpecError) as refused:
        studies.resolve_spec(_grid_spec("smooth", _CONTINUOUS))
    message = str(refused.value)
    assert message.startswith("strategy grid: space 'smooth' has nothing to grid: optim.lr")
    assert "give knobs a `step`" in message and "pick another strategy" in message
    # The command says the same in one line, and writes nothing.
    spec = tmp_path / "study.yaml"
    spec.write_text(json.dumps(_grid_spec("smooth", _CONTINUOUS)))
    database = tmp_path / "cli.db"
    done = _hpsearch("submit", str(spec), "--storage", f"sqlite:///{database}")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"hpsearch submit: error: {message} [writing sqlite:")
    assert len(done.stderr.strip().splitlines()) == 1
    assert optuna.get_all_study_names(f"sqlite:///{database}") == []
    # Over REST: 422 with the same line, no 500.
    token = {"Authorization": f"Bearer {make_api_token(sqlite_url)}"}
    reply = httpx.post(
        f"{live_service}/studies", json=_grid_spec("smooth", _CONTINUOUS), headers=token
    )
    assert reply.status_code == 422 and message in reply.text


def test_the_trial_budget_is_the_grid_at_most_and_says_so(tmp_path):
    resolved = studies.resolve_spec(_grid_spec("g", _FLAT, budget={"trials": 500}))
    assert resolved.budget.trials == 72  # the study ends when the grid is spent
    assert studies.resolve_spec(_grid_spec("g", _FLAT)).budget.trials == 72  # no budget: all
    assert studies.resolve_spec(_grid_spec("g", _FLAT, budget={"seconds": 60})).budget.trials == 72
    assert studies.resolve_spec(_grid_spec("g", _FLAT, budget={"trials": 5})).budget.trials == 5
    with pytest.raises(SpecError, match="warm_start does not combine with strategy grid"):
        studies.resolve_spec(_grid_spec("g", _FLAT, warm_start={"study": "other"}))
    # `hpsearch submit` and `hpsearch status` say how much of the grid the budget runs.
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    spec = tmp_path / "study.yaml"
    spec.write_text(json.dumps(_grid_spec("part", _FLAT, budget={"trials": 5})))
    done = _hpsearch("submit", str(spec), "--storage", storage)
    assert done.returncode == 0 and done.stdout == "part\n"
    assert "72 grid points; the study runs 5 of them (budget.trials)" in done.stderr
    status = _hpsearch("status", "part", "--storage", storage)
    assert "72 grid points; the study runs 5 of them" in status.stdout
    with pytest.raises(SpecError, match="searches a grid"):
        studies.enqueue_configs(open_storage(storage), "part", [{"optim.lr": 0.1}])


# -- run by workers ----------------------------------------------------------------------------


def test_two_worker_processes_run_every_grid_point_once_and_the_study_finishes(storage_url):
    fixed = {"train.amp": True}  # 3 x 4 x 3 = 36 points
    spec = _grid_spec("g", _FLAT, budget={"trials": 500}, fixed=fixed)
    studies.create_study(open_storage(storage_url), spec)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "hpsearch", "worker", "--storage", storage_url, "--study", "g",
             "--gpus", "none", "--objective", "instant_objectives:instant"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    outputs = [w.communicate(timeout=180)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    for out in outputs:  # no point run again, no result said to be dropped
        assert "every point of the grid has run" not in out and "ended elsewhere" not in out, out
    trials = _trials(storage_url, "g")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 36
    configs = [_key(t.params) for t in trials]
    grid = build_grid(SearchSpace.model_validate(_FLAT), fixed)
    assert sorted(configs) == sorted(_key(c) for c in grid.configs())  # each point exactly once
    assert {t.user_attrs["config"]["train.amp"] for t in trials} == {True}  # fixed, not gridded
    status = studies.study_status(open_storage(storage_url), "g")
    assert status.state == "done" and status.done_reason == "every point of the grid ran (36)"
    assert status.grid_points == 36 and status.budget_trials == 36


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # the test's own ask()
def test_a_failed_point_is_not_run_again_and_a_retried_one_keeps_its_point(storage_url):
    space = {
        "name": "fails",
        "task": "custom",
        "params": {
            "model.width": _knob(type="categorical", choices=[32, 128], default=32),
            "optim.lr": _knob(type="categorical", choices=[0.001, 0.01, 0.1], default=0.01),
        },
    }
    storage = open_storage(storage_url)
    studies.create_study(storage, _grid_spec("f", space, budget={"trials": 50, "max_failures": 20}))
    # A worker killed during its first trial: the trial fails and a retry of it is queued.
    study, spec = studies.open_study(storage, "f")
    killed = study.ask()
    config = suggest_config(killed, spec.search_space)
    study.tell(killed, state=TrialState.FAIL)
    storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(killed._trial_id))
    # objectives:failing fails every width-128 config: those points are spent, not re-run.
    run_worker(storage_url, study="f", objective="objectives:failing")
    trials = _trials(storage_url, "f")
    ran = [t for t in trials if t.number != killed.number]
    assert len(ran) == 6  # the retry and the five other points; nothing more
    assert {_key(t.params) for t in ran} == {
        _key(c) for c in build_grid(spec.search_space).configs()
    }
    retry = next(t for t in ran if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.params == config
    states = [t.state for t in ran]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 3
    status = studies.study_status(storage, "f")
    assert status.state == "done" and status.done_reason == "every point of the grid ran (6)"
