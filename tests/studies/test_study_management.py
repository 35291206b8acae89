"""Study management through the real app: list filters, stop/resume/delete, status, CSV,
pruner changes, enqueued configs and warm starts; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hpsearch import studies
from hpsearch.db import fleet
from hpsearch.errors import StudyNotFound
from hpsearch.db.storage import open_storage
from hpsearch.strategy import make_pruner
from hpsearch.db.export import trials_csv
from hpsearch.worker import run_worker
from hpsearch.service import Settings, create_app


def _spec(name, **overrides):
    spec = {"name": name, "space": "demo", "task": {"epochs": 5}, "budget": {"trials": 10}}
    spec.update(overrides)
    return spec


@pytest.fixture
def api(storage_url, make_api_token):
    """A client of the real app that sends a token of scope write."""
    headers = {"Authorization": f"Bearer {make_api_token(storage_url, 'write')}"}
    with TestClient(create_app(Settings(storage=storage_url)), headers=headers) as client:
        yield client


def _create(api, name, **overrides):
    response = api.post("/studies", json=_spec(name, **overrides))
    assert response.status_code == 201, response.text
    return response.json()


def _trials(storage_url, name):
    return optuna.load_study(study_name=name, storage=storage_url).get_trials(deepcopy=False)


def _names(listing):
    return [s["name"] for s in listing["data"]]


# -- listing ---------------------------------------------------------------------------------


def test_list_filters_by_prefix_and_state_then_paginates(api, storage_url):
    for name in ("exp-a1", "exp-a2", "expXb", "exp_c", "EXP-d", "other"):
        _create(api, name)
    _create(api, "exp-done", budget={"trials": 1})
    study, _ = studies.open_study(open_storage(storage_url), "exp-done")
    study.tell(study.ask(), 0.5)
    optuna.create_study(study_name="exp-plain", storage=storage_url)  # not an hpsearch study
    assert api.post("/studies/exp-a2/stop").status_code == 200

    every = api.get("/studies").json()
    assert every["count"] == 7 and "exp-plain" not in _names(every)
    exp = api.get("/studies", params={"prefix": "exp"}).json()
    assert _names(exp) == ["exp-a1", "exp-a2", "expXb", "exp_c", "exp-done"]  # oldest first
    assert exp["count"] == 5  # the case of the prefix counts, on SQLite too
    # LIKE wildcards in the prefix are plain characters.
    assert _names(api.get("/studies", params={"prefix": "exp_"}).json()) == ["exp_c"]
    assert api.get("/studies", params={"prefix": "exp%"}).json()["count"] == 0

    stopped = api.get("/studies", params={"prefix": "exp", "state": "stopped"}).json()
    assert _names(stopped) == ["exp-a2"] and stopped["data"][0]["state"] == "stopped"
    done = api.get("/studies", params={"state": "done"}).json()
    assert _names(done) == ["exp-done"] and done["data"][0]["done"]
    page = api.get("/studies", params={"prefix": "exp", "state": "open", "offset": 1, "limit": 2})
    assert page.json()["count"] == 3 and _names(page.json()) == ["expXb", "exp_c"]

    assert api.get("/studies", params={"state": "sleeping"}).status_code == 422
    assert api.get("/studies", params={"limit": 0}).status_code == 422


# -- stop, resume, delete --------------------------------------------------------------------


def test_a_stopped_study_runs_no_trial_until_resumed(api, storage_url):
    _create(api, "s", budget={"trials": 2}, pruner="none")
    study, _ = studies.open_study(open_storage(storage_url), "s")
    running = study.ask()
    stopped = api.post("/studies/s/stop")
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert body["state"] == "stopped" and body["done"] and body["stopped_at"]
    assert "resume" in body["done_reason"]
    assert studies.is_stopped(open_storage(storage_url), study._study_id)
    first_stop = body["stopped_at"]
    assert api.post("/studies/s/stop").json()["stopped_at"] == first_stop  # idempotent

    study.tell(running, 0.5)  # a trial running when the study stopped finishes normally
    assert run_worker(storage_url, study="s", objective="objectives:quadratic") == 0
    assert run_worker(storage_url, objective="objectives:quadratic") == 0  # nor when picking
    assert len(_trials(storage_url, "s")) == 1

    resumed = api.post("/studies/s/resume").json()
    assert resumed["state"] == "open" and not resumed["done"] and resumed["stopped_at"] is None
    assert run_worker(storage_url, study="s", objective="objectives:quadratic") == 1
    states = [t.state for t in _trials(storage_url, "s")]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert api.get("/studies/s").json()["state"] == "done"

    assert api.post("/studies/ghost/stop").status_code == 404
    assert api.post("/studies/ghost/resume").status_code == 404


def test_delete_needs_force_while_trials_run(api, storage_url):
    _create(api, "d")
    _create(api, "keep")
    study, _ = studies.open_study(open_storage(storage_url), "d")
    study.tell(study.ask(), 0.1)
    study.ask()  # running
    busy = api.delete("/studies/d")
    assert busy.status_code == 409 and "1 running" in busy.json()["detail"]
    assert "force" in busy.json()["detail"]
    assert api.get("/studies/d").status_code == 200  # nothing was deleted
    gone = api.delete("/studies/d", params={"force": "true"})
    assert gone.status_code == 204 and gone.content == b""
    assert api.get("/studies/d").status_code == 404
    assert _names(api.get("/studies").json()) == ["keep"]
    with open_storage(storage_url).engine.connect() as conn:
        left = conn.execute(
            sqlalchemy.text("SELECT COUNT(*) FROM trials WHERE study_id = :id"),
            {"id": study._study_id},
        ).scalar_one()
    assert left == 0
    assert api.delete("/studies/d").status_code == 404

    _create(api, "idle")
    assert api.delete("/studies/idle").status_code == 204  # no running trial: no force needed


# -- status ----------------------------------------------------------------------------------


def _set_duration(storage_url, study_id, number, seconds):
    start = dt.datetime(2024, 1, 1, 12, 0, 0)
    with open_storage(storage_url).engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "UPDATE trials SET datetime_start = :start, datetime_complete = :end "
                "WHERE study_id = :study_id AND number = :number"
            ),
            {
                "start": start,
                "end": start + dt.timedelta(seconds=seconds),
                "study_id": study_id,
                "number": number,
            },
        )


def test_status_has_state_eta_pruning_savings_and_workers(api, storage_url):
    status = _create(api, "st", task={"epochs": 5}, budget={"trials": 10}, pruner="none")
    assert status["state"] == "open" and status["eta_seconds"] is None
    assert status["pruning"] == {"pruned": 0, "epochs_saved": 0} and status["workers"] == 0
    storage = open_storage(storage_url)
    study, _ = studies.open_study(storage, "st")

    def run(reports, *, pruned):
        trial = study.ask()
        for step, value in enumerate(reports, start=1):
            trial.report(value, step)
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, reports[-1])
        return trial

    run([0.1, 0.2, 0.3, 0.4, 0.5], pruned=False)
    run([0.1, 0.1], pruned=True)  # pruned after epoch 2 of 5: 3 epochs saved
    run([], pruned=True)  # pruned before any report: 5 saved
    run([0.1] * 7, pruned=True)  # an objective reporting past task.epochs saves none
    for number, seconds in enumerate((10, 20, 30, 40)):
        _set_duration(storage_url, study._study_id, number, seconds)
    study.ask()
    study.ask()  # two running

    status = api.get("/studies/st").json()
    assert status["pruning"] == {"pruned": 3, "epochs_saved": 8}
    assert status["finished"] == 4 and status["counts"]["running"] == 2
    # 6 trials left x 25 s mean / 2 running
    assert status["eta_seconds"] == pytest.approx(75.0, abs=0.01)
    assert status["best_value"] == 0.5 and status["best_trial"] == 0

    worker_id = fleet.new_worker_id("cpu")
    fleet.register_worker(storage, worker_id, device="cpu")
    fleet.worker_beat(storage, worker_id, study="st", trial_number=4)
    assert api.get("/studies/st").json()["workers"] == 1
    assert api.get("/studies").json()["data"][0]["workers"] == 1
    fleet.retire_worker(storage, worker_id)
    assert api.get("/studies/st").json()["workers"] == 0

    stopped = api.post("/studies/st/stop").json()
    assert stopped["state"] == "stopped" and stopped["eta_seconds"] is None
    timed = _create(api, "timed", budget={"seconds": 3600})
    assert timed["eta_seconds"] is None  # no trial budget, no ETA


def test_best_value_follows_the_direction(api, storage_url):
    _create(api, "min", metric="val_loss", direction="minimize")
    study, _ = studies.open_study(open_storage(storage_url), "min")
    for value in (0.7, 0.2, 0.9):
        study.tell(study.ask(), value)
    status = api.get("/studies/min").json()
    assert status["best_value"] == 0.2 and status["best_trial"] == 1


# -- trials: bounded reads, CSV ---------------------------------------------------------------


def _count_queries(engine, fn):
    statements = []

    def record(*_args):
        statements.append(1)

    sqlalchemy.event.listen(engine, "before_cursor_execute", record)
    try:
        fn()
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", record)
    return len(statements)


def test_a_trials_page_costs_the_same_queries_for_few_or_many_trials(api, storage_url):
    _create(api, "q", budget={"trials": 50})
    storage = open_storage(storage_url)
    study, _ = studies.open_study(storage, "q")
    for i in range(30):
        trial = study.ask()
        trial.suggest_float("optim.lr", 1e-4, 0.3, log=True)
        trial.set_user_attr("worker", f"w{i}")
        trial.report(0.1, 1)
        study.tell(trial, i / 100)
    small = _count_queries(storage.engine, lambda: studies.list_trials(storage, "q", limit=3))
    large = _count_queries(storage.engine, lambda: studies.list_trials(storage, "q", limit=30))
    assert small == large and large <= 12
    page, total = studies.list_trials(storage, "q", offset=28, limit=5)
    assert total == 30 and [t.number for t in page] == [28, 29]
    assert page[0].worker == "w28" and page[0].intermediate_values == {1: 0.1}
    assert page[1].value == pytest.approx(0.29) and "optim.lr" in page[1].params


def test_trials_csv_has_a_row_per_trial_and_defuses_formulas(api, storage_url):
    _create(api, "c", budget={"trials": 20})
    storage = open_storage(storage_url)
    study, _ = studies.open_study(storage, "c")
    for i in range(5):
        trial = study.ask()
        trial.suggest_float("optim.lr", 1e-4, 0.3, log=True)
        trial.suggest_categorical("optim.name", ["sgd", "adam", "adamw"])
        if i == 3:
            trial.set_user_attr("fail_reason", "=cmd|' /C calc'!A0")
            study.tell(trial, state=TrialState.FAIL)
        else:
            trial.set_user_attr("worker", "-host:1" if i == 0 else "host:1")
            study.tell(trial, -0.5 + i)
    study.ask()  # running, without params yet

    response = api.get("/studies/c/trials.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["number"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    header = next(csv.reader(io.StringIO(response.text)))
    assert header[:9] == ["number", "state", "value", "duration_seconds", "datetime_start",
                          "datetime_complete", "worker", "fail_reason", "prune_reason"]  # fmt: skip
    assert header[9:] == ["params_optim.lr", "params_optim.name"]  # the space's order
    assert rows[3]["fail_reason"] == "'=cmd|' /C calc'!A0" and rows[3]["state"] == "fail"
    assert rows[0]["worker"] == "'-host:1"  # a string starting with '-' is defused too
    assert rows[0]["value"] == "-0.5"  # numbers are left as they are
    assert float(rows[2]["params_optim.lr"]) == study.trials[2].params["optim.lr"]
    assert rows[5]["state"] == "running" and rows[5]["params_optim.lr"] == ""

    fails = list(csv.DictReader(io.StringIO(api.get("/studies/c/trials.csv?state=fail").text)))
    assert [r["number"] for r in fails] == ["3"]
    assert api.get("/studies/c/trials.csv", params={"state": "nope"}).status_code == 422
    assert api.get("/studies/ghost/trials.csv").status_code == 404
    # Read in pages: a page smaller than the study still yields every trial once.
    paged = list(csv.reader(io.StringIO("".join(trials_csv(storage, "c", page_size=2)))))
    assert [r[0] for r in paged[1:]] == ["0", "1", "2", "3", "4", "5"]


# -- pruner ----------------------------------------------------------------------------------


def test_the_pruner_can_be_changed_and_a_bad_one_changes_nothing(api, storage_url):
    _create(api, "p", pruner={"name": "median"})
    patient = {"name": "patient", "args": {"patience": 2, "wraps": {"name": "median"}}}
    changed = api.put("/studies/p/pruner", json=patient)
    assert changed.status_code == 200, changed.text
    assert changed.json()["pruner"] == patient
    assert api.get("/studies/p/spec").json()["pruner"] == patient
    assert api.get("/studies/p").json()["pruner"] == "patient"
    study, _ = studies.open_study(open_storage(storage_url), "p")
    assert isinstance(study.pruner, optuna.pruners.PatientPruner)

    for bad, word in [
        ({"name": "sometimes"}, "sometimes"),
        ({"name": "median", "args": {"bogus": 1}}, "bogus"),
        ({"name": "patient", "args": {"patience": -1}}, "patience"),
        ({"name": "patient", "args": {"wraps": {"name": "nope"}}}, "nope"),
        ({"name": "hyperband", "args": {"reduction_factor": 1}}, "reduction_factor"),
    ]:
        refused = api.put("/studies/p/pruner", json=bad)
        assert refused.status_code == 422 and word in str(refused.json()["detail"]), bad
    assert api.get("/studies/p/spec").json()["pruner"] == patient
    assert api.put("/studies/ghost/pruner", json={"name": "median"}).status_code == 404


def test_the_patient_pruner_builds_and_prunes_a_stalled_trial():
    pruner = make_pruner("patient", epochs=10, patience=2)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    improving = study.ask()
    for step, value in enumerate([0.1, 0.2, 0.3, 0.4], start=1):
        improving.report(value, step)
        assert not improving.should_prune()
    stalled = study.ask()
    verdicts = []
    for step, value in enumerate([0.5, 0.4, 0.4, 0.3], start=1):
        stalled.report(value, step)
        verdicts.append(stalled.should_prune())
    assert verdicts == [False, False, False, True]  # 3 epochs without a better value > patience 2
    wrapped = make_pruner("patient", epochs=10, patience=0, wraps={"name": "median"})
    assert isinstance(wrapped._wrapped_pruner, optuna.pruners.MedianPruner)


# -- enqueue, warm start ---------------------------------------------------------------------


def _waiting(storage_url, name):
    return [t for t in _trials(storage_url, name) if t.state == TrialState.WAITING]


def test_enqueue_checks_every_config_before_enqueuing_any(api, storage_url):
    _create(api, "e", fixed={"optim.name": "sgd"}, pruner="none", budget={"trials": 3})
    good = {"optim.lr": 0.01, "model.width": 64, "optim.momentum": 0.95}
    for bad, words in [
        ({"optim.lrr": 0.01}, ["configs[1]", "optim.lrr", "optim.lr"]),
        ({"optim.lr": 5.0}, ["configs[1]", "optim.lr", "outside"]),
        ({"sched.name": "warp"}, ["configs[1]", "sched.name", "choices"]),
        ({"optim.name": "adam"}, ["configs[1]", "optim.name", "fixed"]),
        ({"loss.name": "mse", "loss.label_smoothing": 0.1}, ["loss.label_smoothing", "loss.name"]),
        ({}, ["configs[1]", "empty"]),
    ]:
        refused = api.post("/studies/e/enqueue", json={"configs": [good, bad]})
        assert refused.status_code == 422, bad
        assert all(w in refused.json()["detail"] for w in words), refused.json()
        assert _waiting(storage_url, "e") == []  # not even the good one
    assert api.post("/studies/e/enqueue", json={"configs": []}).status_code == 422
    assert api.post("/studies/e/enqueue", json={"configs": "x"}).status_code == 422
    assert api.post("/studies/ghost/enqueue", json={"configs": [good]}).status_code == 404

    second = {"optim.lr": 0.001, "optim.name": "sgd"}  # the fixed value is allowed and dropped
    done = api.post("/studies/e/enqueue", json={"configs": [good, second]})
    assert done.status_code == 200 and done.json() == {"enqueued": 2, "given": 2}
    again = api.post("/studies/e/enqueue", json={"configs": [good]}).json()
    assert again == {"enqueued": 0, "given": 1}  # the same config is not queued twice
    assert api.get("/studies/e").json()["counts"]["waiting"] == 2

    assert run_worker(storage_url, study="e", objective="objectives:quadratic") == 3
    first, then, sampled = _trials(storage_url, "e")
    assert {k: first.params[k] for k in good} == good  # the enqueued config ran first
    assert then.params["optim.lr"] == 0.001 and "optim.name" not in then.params
    assert then.user_attrs["config"]["optim.name"] == "sgd"
    assert all(t.state == TrialState.COMPLETE for t in (first, then, sampled))


def _source_study(storage_url):
    dists = {
        "optim.lr": FloatDistribution(1e-5, 1.0, log=True),
        "model.width": IntDistribution(8, 1024, log=True),
        "optim.name": CategoricalDistribution(["sgd", "adam", "adamw"]),
        "other.knob": FloatDistribution(0.0, 1.0),
    }
    source = optuna.create_study(study_name="src", storage=storage_url, direction="maximize")
    for value, params in [
        (0.90, {"optim.lr": 0.01, "model.width": 64, "optim.name": "adam"}),
        (0.95, {"optim.lr": 0.5, "model.width": 64, "optim.name": "adam"}),  # lr out of range
        (0.80, {"optim.lr": 0.002, "model.width": 32, "optim.name": "sgd", "other.knob": 0.3}),
        (0.10, {"optim.lr": 0.05, "model.width": 16, "optim.name": "sgd"}),  # not in the top 3
    ]:
        source.add_trial(
            create_trial(value=value, params=params, distributions={k: dists[k] for k in params})
        )
    source.add_trial(create_trial(state=TrialState.FAIL))
    return source


def test_warm_start_enqueues_the_best_configs_of_another_study(api, storage_url):
    _source_study(storage_url)
    missing = api.post("/studies", json=_spec("w0", warm_start={"study": "ghost"}))
    assert missing.status_code == 422 and "ghost" in missing.json()["detail"]
    assert api.get("/studies/w0").status_code == 404  # nothing was created

    created = _create(api, "w", warm_start={"study": "src", "top": 3}, pruner="none")
    report = created["warm_start"]
    assert report["source"] == "src" and report["enqueued"] == 2
    (skipped,) = report["skipped"]
    assert "trial 1" in skipped and "optim.lr" in skipped
    assert api.get("/studies/w").json()["warm_start"] == report  # stored with the study
    waiting = _waiting(storage_url, "w")
    assert [t.system_attrs["fixed_params"] for t in waiting] == [
        {"optim.lr": 0.01, "model.width": 64, "optim.name": "adam"},
        {"optim.lr": 0.002, "model.width": 32, "optim.name": "sgd"},  # other.knob left out
    ]
    assert run_worker(storage_url, study="w", objective="objectives:quadratic", max_trials=2) == 2
    ran = _trials(storage_url, "w")
    assert [t.params["optim.lr"] for t in ran] == [0.01, 0.002]
    assert all(t.state == TrialState.COMPLETE and math.isfinite(t.value) for t in ran)


def test_warm_start_drops_parameters_the_new_study_fixes(api, storage_url):
    _source_study(storage_url)
    created = _create(api, "wf", warm_start={"study": "src", "top": 2}, fixed={"model.width": 128})
    assert created["warm_start"]["enqueued"] == 1  # the best one (trial 1) does not fit
    (waiting,) = _waiting(storage_url, "wf")
    assert waiting.system_attrs["fixed_params"] == {"optim.lr": 0.01, "optim.name": "adam"}


# -- the CLI verbs, through the client, against a real server ---------------------------------


def _hpsearch(*args, env, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def server(sqlite_url, free_port, make_api_token):
    """A real `hpsearch serve` over a SQLite file; yields the env a CLI user would have."""
    env = {
        **os.environ,
        "HPSEARCH_API_TOKEN": make_api_token(sqlite_url, "write"),
        "HPSEARCH_SERVER": f"http://127.0.0.1:{free_port}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "serve", "--storage", sqlite_url,
         "--port", str(free_port), "--no-dashboard"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{env['HPSEARCH_SERVER']}/healthz", timeout=5):
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.3)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    "verb", ["stop", "resume", "delete", "prune", "trials", "enqueue", "pruner"]
)
def test_every_new_verb_explains_itself(verb):
    out = _hpsearch(verb, "--help", env=os.environ)
    assert (
        out.returncode == 0 and f"usage: hpsearch {verb}" in out.stdout and "--server" in out.stdout
    )


def test_the_cli_manages_a_study_through_the_service(server, sqlite_url, tmp_path):
    storage = open_storage(sqlite_url)
    studies.create_study(storage, _spec("cli", pruner="none", budget={"trials": 2}))

    stopped = _hpsearch("stop", "cli", env=server)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert studies.study_status(storage, "cli").state == "stopped"
    assert _hpsearch("resume", "cli", env=server).returncode == 0
    assert studies.study_status(storage, "cli").state == "open"

    configs = tmp_path / "configs.yaml"
    configs.write_text("- {optim.lr: 0.01, model.width: 64}\n- {optim.lr: 0.02}\n")
    queued = _hpsearch("enqueue", "cli", str(configs), env=server)
    assert queued.returncode == 0 and "enqueued 2 of 2" in queued.stdout, queued.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim.lr: 7\n")
    refused = _hpsearch("enqueue", "cli", str(bad), env=server)
    assert refused.returncode == 1 and "optim.lr" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    changed = _hpsearch("pruner", "cli", "patient", "--arg", "patience=2", "--arg",
                        "wraps=median", env=server)  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert studies.load_spec(storage, "cli").pruner.args == {"patience": 2, "wraps": "median"}
    wrong = _hpsearch("pruner", "cli", "asha", "--arg", "bogus=1", env=server)
    assert wrong.returncode == 1 and "bogus" in wrong.stderr

    assert run_worker(sqlite_url, study="cli", objective="objectives:quadratic") == 2
    listed = _hpsearch("trials", "cli", env=server)
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 3
    out = tmp_path / "trials.csv"
    exported = _hpsearch("trials", "cli", "--csv", str(out), env=server)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(out.open()))
    assert [float(r["params_optim.lr"]) for r in rows] == [0.01, 0.02]

    not_running = _hpsearch("prune", "cli", "0", env=server)
    assert not_running.returncode == 1 and "not running" in not_running.stderr
    unconfirmed = _hpsearch("delete", "cli", env=server)
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    deleted = _hpsearch("delete", "cli", "--yes", env=server)
    assert deleted.returncode == 0, deleted.stderr
    with pytest.raises(StudyNotFound):
        studies.study_status(storage, "cli")
    gone = _hpsearch("stop", "cli", env=server)
    assert gone.returncode == 1 and "cli" in gone.stderr
