"""Workers pulling trials from a shared study database: budget, failures, pruning, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.errors import SpecError, UsageError
from hpsearch.db.storage import open_storage
from hpsearch.worker import run_worker

TESTS = Path(__file__).parents[1]  # the objectives modules beside conftest.py


def _create(storage_url, name="w", trials=6, **overrides):
    spec = {
        "name": name,
        "space": "demo",
        "task": {"epochs": 3},
        "budget": {"trials": trials},
        "seed": 0,
    }
    spec.update(overrides)
    return studies.create_study(open_storage(storage_url), spec)


def _trials(storage_url, name="w"):
    return optuna.load_study(study_name=name, storage=storage_url).get_trials(deepcopy=False)


def _worker_process(storage_url, *args):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpsearch",
            "worker",
            "--storage",
            storage_url,
            "--gpus",
            "none",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_worker_runs_exactly_the_budget(storage_url):
    _create(storage_url, trials=6, fixed={"optim.name": "sgd"}, pruner="none")
    ran = run_worker(storage_url, study="w", objective="objectives:quadratic")
    assert ran == 6
    trials = _trials(storage_url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    for t in trials:
        config = t.user_attrs["config"]
        assert config["optim.name"] == "sgd"  # the fixed value
        assert "optim.momentum" in config and "optim.beta1" not in config  # the condition held
        assert t.intermediate_values and t.value == pytest.approx(
            -abs(__import__("math").log10(config["optim.lr"]) + 2)
            - abs(__import__("math").log2(config["model.width"]) - 7) / 4
        )
    assert [t.user_attrs["seed"] for t in trials] == list(range(6))  # spec seed 0 + number
    # The impact strategy starts from the checklist defaults.
    assert trials[0].params["optim.lr"] == pytest.approx(3e-3)
    # A second worker finds nothing left to do.
    assert run_worker(storage_url, study="w", objective="objectives:quadratic") == 0


def test_a_seeded_study_samples_the_same_configs_on_every_run(storage_url):
    for name in ("first", "second"):
        _create(storage_url, name=name, trials=5, seed=3, strategy="tpe", pruner="none")
        run_worker(storage_url, study=name, objective="objectives:quadratic")
    first, second = ([t.params for t in _trials(storage_url, name)] for name in ("first", "second"))
    assert first == second and len({str(p) for p in first}) == 5


def test_an_unseeded_study_still_records_a_seed_per_trial(storage_url):
    _create(storage_url, trials=3, seed=None, pruner="none")
    run_worker(storage_url, study="w", objective="objectives:quadratic")
    seeds = [t.user_attrs["seed"] for t in _trials(storage_url)]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) == 3


def test_enqueued_trials_do_not_overshoot_the_budget(storage_url):
    _create(storage_url, trials=2, pruner="none")
    run_worker(storage_url, study="w", objective="objectives:quadratic")
    study = optuna.load_study(study_name="w", storage=storage_url)
    study.enqueue_trial({"optim.lr": 0.01})
    assert run_worker(storage_url, study="w", objective="objectives:quadratic") == 0
    assert [t.state for t in _trials(storage_url)].count(TrialState.COMPLETE) == 2


def test_a_claimed_trial_has_a_heartbeat_before_it_runs(storage_url):
    from hpsearch.worker.loop import _Worker

    _create(storage_url, trials=2)
    storage = open_storage(storage_url)
    worker = _Worker(
        storage, objective=lambda c, r: 0.0, device="cpu", checkpoint_dir=None, poll_seconds=0.1
    )
    trial = worker.claim(worker.join("w"))
    with storage.engine.connect() as conn:
        beats = conn.exec_driver_sql(
            f"SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = {trial._trial_id}"
        ).scalar()
    assert beats == 1  # so a worker killed now leaves a trial that goes stale, not RUNNING


def test_without_a_study_name_a_worker_serves_every_open_study(storage_url):
    _create(storage_url, name="a", trials=2)
    _create(storage_url, name="b", trials=3)
    assert run_worker(storage_url, objective="objectives:quadratic") == 5
    assert len(_trials(storage_url, "a")) == 2 and len(_trials(storage_url, "b")) == 3


_OWN_SPACE = {
    "name": "own",
    "task": "custom",
    "params": {
        "my.x": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5, "impact": "high",
                 "checklist": "Learning Rate (LR)"},
        "my.kind": {"type": "categorical", "choices": ["a", "b"], "default": "a",
                    "impact": "medium", "checklist": "Loss function"},
    },
}  # fmt: skip


def test_a_study_for_your_own_function_runs_only_on_workers_that_have_it(storage_url):
    _create(storage_url, name="own", trials=3, space=_OWN_SPACE, metric="val_loss")
    _create(storage_url, name="demo", trials=1)
    # A worker of the built-in trainer serves the other study and leaves this one alone...
    assert run_worker(storage_url, device="cpu") == 1
    assert _trials(storage_url, "own") == []
    # ...and, named to it, says what it needs instead of failing trials.
    with pytest.raises(UsageError, match="--objective"):
        run_worker(storage_url, study="own", device="cpu")
    assert run_worker(storage_url, study="own", objective="objectives:own_knobs") == 3
    assert {t.state for t in _trials(storage_url, "own")} == {TrialState.COMPLETE}


def test_unknown_knobs_of_a_trainer_family_are_refused_at_submit(storage_url):
    space = {**_OWN_SPACE, "task": "tabular_classification"}
    with pytest.raises(SpecError, match="not a knob of the tabular_classification trainer.*custom"):
        _create(storage_url, name="own", space=space)
    assert optuna.get_all_study_names(storage_url) == []


def test_two_worker_processes_share_one_study_exactly(storage_url):
    _create(storage_url, trials=16)
    workers = [
        _worker_process(storage_url, "--study", "w", "--objective", "objectives:steady")
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = _trials(storage_url)
    assert len(trials) == 16  # no overshoot: not one extra trial was even created
    assert sorted(t.number for t in trials) == list(range(16))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    # No duplicate work: two seeded workers do not draw the same configs.
    configs = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(configs)) == len(configs)
    # Both processes did work.
    assert len({t.user_attrs["worker"] for t in trials}) == 2, outputs


def test_the_pruner_of_the_spec_stops_bad_trials_early(storage_url):
    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    _create(storage_url, trials=4, pruner=pruner)
    run_worker(storage_url, study="w", objective="objectives:worsening")
    trials = _trials(storage_url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] + [TrialState.PRUNED] * 3
    assert all(list(t.intermediate_values) == [1] for t in trials[1:])  # cut after the first step
    assert studies.study_status(open_storage(storage_url), "w").done


def test_config_failures_are_recorded_and_do_not_stop_the_worker(storage_url):
    _create(storage_url, trials=4, budget={"trials": 4, "max_failures": 50}, pruner="none")
    run_worker(storage_url, study="w", objective="objectives:failing")
    trials = _trials(storage_url)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4  # failures do not count against the trial budget
    assert failed, "the demo space samples widths above 64 in some trials"
    for t in failed:
        assert "does not fit" in t.user_attrs["fail_reason"]
    assert studies.study_status(open_storage(storage_url), "w").done


def test_too_many_failures_end_the_study(storage_url):
    _create(
        storage_url, trials=50, budget={"trials": 50, "max_failures": 2}, fixed={"model.width": 256}
    )
    run_worker(storage_url, study="w", objective="objectives:failing")
    status = studies.study_status(open_storage(storage_url), "w")
    assert status.counts["fail"] == 3 and status.done
    assert "max_failures" in status.done_reason


def _wait_for_running_trial(storage_url, name="w", timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [
            t
            for t in _trials(storage_url, name)
            if t.state == TrialState.RUNNING and t.intermediate_values
        ]
        if running:
            return running[0]
        time.sleep(0.1)
    raise AssertionError("no trial started running")


def test_a_prune_request_stops_the_running_trial_at_its_next_report(storage_url):
    _create(storage_url, trials=1, pruner={"name": "none"})
    worker = _worker_process(storage_url, "--study", "w", "--objective", "objectives:slow")
    try:
        trial = _wait_for_running_trial(storage_url)
        studies.request_prune(open_storage(storage_url), "w", trial.number)
        out, _ = worker.communicate(timeout=60)
    finally:
        worker.kill()
    (t,) = _trials(storage_url)
    assert t.state == TrialState.PRUNED, out
    assert max(t.intermediate_values) < 100
    assert "on request" in t.user_attrs["prune_reason"]


def test_sigterm_fails_the_running_trial_queues_it_again_and_exits(storage_url):
    _create(storage_url, trials=3, pruner={"name": "none"})
    worker = _worker_process(storage_url, "--study", "w", "--objective", "objectives:slow")
    try:
        running = _wait_for_running_trial(storage_url)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)  # the bound on stopping
    finally:
        worker.kill()
    assert worker.returncode == 0, out
    stopped, retry = _trials(storage_url)
    assert stopped.state == TrialState.FAIL  # not RUNNING forever
    assert "stopped (SIGTERM)" in stopped.user_attrs["fail_reason"]
    # Queued to run again with the same params, the same seed, and its learning curve so far.
    assert retry.state == TrialState.WAITING
    assert retry.params == stopped.params and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs["seed"] == stopped.user_attrs["seed"]
    assert retry.intermediate_values == stopped.intermediate_values
    assert running.intermediate_values.items() <= stopped.intermediate_values.items()
    # The next worker runs the retry first, and the stop cost the study no failure.
    run_worker(storage_url, study="w", objective="objectives:quadratic")
    trials = _trials(storage_url)
    assert trials[1].state == TrialState.COMPLETE and trials[1].params == stopped.params
    assert trials[1].user_attrs["fail_reason"] is None
    status = studies.study_status(open_storage(storage_url), "w")
    assert status.finished == 3 and status.done


def test_a_worker_named_to_a_missing_study_says_so_in_one_line(sqlite_url, capsys):
    from hpsearch.cli import main

    _create(sqlite_url, name="there", trials=1)
    assert main(["worker", "--study", "thre", "--storage", sqlite_url, "--gpus", "none"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no study named 'thre'" in err and "hpsearch status" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
